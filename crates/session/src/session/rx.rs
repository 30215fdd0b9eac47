//! The receive side: one decoder with one cursor, used by both the buffered
//! path ([`Session::handle_bytes`]) and the zero-copy path
//! ([`Session::recv_direct`]), and the buffers the application reads from.
//!
//! The decoder checks every header against the state and the limits before
//! it waits for the body (§2.4): an illegal frame is refused from its header.
//! Control frames are assembled whole (bounded by their limits); DATA
//! payloads and skipped unknown frames are streamed, never buffered as frames.

use crate::fmt::{debug, trace};
use alloc::collections::VecDeque;
use bookend_wire::{
    AcceptRepr, ConnectRepr, Decoded, Error as WireError, Frame, FrameRepr, FrameType, HEADER_LEN,
    Integrity, Limits, MAX_FRAME_SIZE, MAX_USER_DATA, Mode, Reason, SEALED_HEADER_LEN, TRAILER_LEN,
    VERSION, decode, flags, header_len,
};
use bytes::{Bytes, BytesMut};
use core::time::Duration;

use super::lazy::Lazy;
use super::machine::Args;
use super::queue::Queue;
use super::{Bounds, PeerDisconnect, Session};
use crate::bits::Flags;
use crate::config::Options;
use crate::event::Violation;
use crate::state::{self, Input, TimerId};
use crate::time::Instant;

/// What one queued message costs the receive buffer besides its bytes: the
/// `Bytes` handle and its queue slot, rounded up. Counting it makes flow
/// control bound memory even for empty messages (one per 6 wire bytes).
pub const MESSAGE_OVERHEAD: usize = 64;

/// The payload length a header announces: `length` less the CRC-32C
/// trailer when the frame is sealed (§2.5).
fn payload_len(fl: u8, len: u32) -> u32 {
    if fl & flags::CRC32C != 0 {
        len.saturating_sub(TRAILER_LEN as u32)
    } else {
        len
    }
}

/// A frame body being streamed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Body {
    /// DATA payload, with the frame's END_OF_MESSAGE flag.
    Data { end_of_message: bool },
    /// An unknown frame without MUST_UNDERSTAND, skipped.
    Skip,
}

/// Received bytes held by the session: a partial control frame, and the DATA
/// waiting for the application.
#[derive(Debug, Default, Clone)]
pub(crate) struct RxBufs {
    /// A control frame (or any frame's header, or a sealed frame) received
    /// in part.
    pub(super) partial: Queue,
    /// Stream mode: the bytes for the application. Message mode with
    /// `records`: the messages, each after its length.
    pub(super) stream: Queue,
    pub(super) messages: VecDeque<Bytes>,
    /// Message mode in provided storage ([`crate::SessionBuffers`]): messages
    /// are kept as records in `stream`, not as `Bytes` each (which would
    /// allocate per message); `None` on the heap.
    pub(super) records: Option<Records>,
    /// Written since it came from the pool (or was last made fit for it):
    /// only then can a buffer have grown, and `shrink` need look.
    pub(super) touched: bool,
    /// The message in reassembly. A complete one is moved out whole
    /// (`end_message`), never split off, so this buffer never shares storage
    /// with a message handed to the application and may go to the pool.
    pub(super) message: BytesMut,
}

impl RxBufs {
    /// Whether nothing is held, so that the box can be recycled.
    pub(super) fn is_idle(&self) -> bool {
        self.partial.is_empty()
            && self.stream.is_empty()
            && self.messages.is_empty()
            && self.message.is_empty()
    }

    /// Empties every buffer, keeping their allocations.
    pub(super) fn clear(&mut self) {
        self.partial.clear();
        self.clear_data();
    }

    /// Empties the buffers of DATA, keeping their allocations.
    pub(super) fn clear_data(&mut self) {
        self.stream.clear();
        self.messages.clear();
        self.message.clear();
        if let Some(r) = &mut self.records {
            *r = Records::default();
        }
    }

    /// Whether the buffers are in the application's storage: they stay
    /// with the session, never go to the spare pool.
    pub(super) fn is_provided(&self) -> bool {
        self.stream.is_fixed()
    }

    /// Bytes of the message in reassembly.
    fn message_len(&self) -> usize {
        match &self.records {
            Some(r) => r.open_len as usize,
            None => self.message.len(),
        }
    }

    /// Complete messages queued.
    fn messages_len(&self) -> usize {
        match &self.records {
            Some(r) => r.count as usize,
            None => self.messages.len(),
        }
    }

    /// Stream mode's bytes for the application. Records (message mode in
    /// provided storage) are not: they are counted as messages, by
    /// `messages_charge` and `message_len`. `stream` holds records only
    /// while there are some, so a session in stream mode, whose `records`
    /// are never used, counts every byte of it.
    fn stream_len(&self) -> usize {
        match &self.records {
            Some(r) if r.count > 0 || r.open => 0,
            _ => self.stream.len(),
        }
    }

    /// Appends to the message in reassembly; returns whether it fit.
    #[must_use]
    fn push_message_bytes(&mut self, chunk: &[u8]) -> bool {
        match &mut self.records {
            Some(r) => {
                let header = if r.open { 0 } else { RECORD_HEADER };
                if !self.stream.reserve(header + chunk.len()) {
                    return false;
                }
                if !r.open {
                    r.open = true;
                    let _ = self.stream.extend_from_slice(&[0; RECORD_HEADER]);
                }
                r.open_len += chunk.len() as u32;
                self.stream.extend_from_slice(chunk)
            }
            None => {
                self.message.extend_from_slice(chunk);
                true
            }
        }
    }

    /// Completes the message in reassembly, returning its length; `None`
    /// if its record's header did not fit.
    fn complete_message(&mut self) -> Option<usize> {
        match &mut self.records {
            Some(r) => {
                if !r.open && !self.stream.extend_from_slice(&[0; RECORD_HEADER]) {
                    return None;
                }
                let len = r.open_len as usize;
                let at = self.stream.len() - len - RECORD_HEADER;
                self.stream[at..at + RECORD_HEADER].copy_from_slice(&r.open_len.to_be_bytes());
                r.count += 1;
                r.open = false;
                r.open_len = 0;
                Some(len)
            }
            None => {
                // Moved out whole, never split off, so the buffer left behind
                // shares nothing. The message keeps its buffer's growth slack
                // (up to twice its length); flow control counts its length
                // plus `MESSAGE_OVERHEAD`, so that slack is uncounted, and
                // bounded by it.
                let msg = core::mem::take(&mut self.message).freeze();
                let len = msg.len();
                self.messages.push_back(msg);
                Some(len)
            }
        }
    }

    /// The length of the first complete message.
    pub(super) fn front_message_len(&self) -> Option<usize> {
        match &self.records {
            Some(r) if r.count > 0 => {
                let h = self.stream.get(..RECORD_HEADER)?;
                Some(u32::from_be_bytes([h[0], h[1], h[2], h[3]]) as usize)
            }
            Some(_) => None,
            None => self.messages.front().map(Bytes::len),
        }
    }

    /// Takes the first complete message into `out` (as long as it is), or
    /// as `Bytes` without `out`; returns its length.
    /// `None` if there is none.
    pub(super) fn pop_message(&mut self, out: Option<&mut [u8]>) -> Option<(usize, Option<Bytes>)> {
        let len = self.front_message_len()?;
        match &mut self.records {
            Some(r) => {
                r.count -= 1;
                self.stream.advance(RECORD_HEADER);
                let msg = match out {
                    Some(out) => {
                        out[..len].copy_from_slice(&self.stream[..len]);
                        self.stream.advance(len);
                        None
                    }
                    // The application asked for `Bytes`: a copy, since the
                    // storage is the application's own.
                    None => Some(self.stream.split_to_bytes(len)),
                };
                Some((len, msg))
            }
            None => {
                let msg = self.messages.pop_front().unwrap_or_default();
                match out {
                    Some(out) => {
                        out[..len].copy_from_slice(&msg);
                        Some((len, None))
                    }
                    None => Some((len, Some(msg))),
                }
            }
        }
    }

    /// Makes the box fit for the spare pool: every buffer empty, unshared,
    /// and at most `max` bytes of allocation, so that a pool of spares stays
    /// small however large one frame was and keeps nothing else alive.
    pub(super) fn shrink(&mut self, max: usize) {
        if !core::mem::take(&mut self.touched) {
            // Untouched since it was last made fit: empty and within bounds
            // (checking costs a reclaim attempt per buffer, on every visit).
            return;
        }
        self.clear();
        // A box in the pool serves heap sessions: messages as `Bytes` (a
        // clone of a provided session's box kept the records' layout).
        self.records = None;
        for b in [&mut self.partial, &mut self.stream] {
            if let Some(b) = b.heap_mut()
                && !fits_the_pool(b, max)
            {
                *b = BytesMut::new();
            }
        }
        if !fits_the_pool(&mut self.message, max) {
            self.message = BytesMut::new();
        }
        if self.messages.capacity() > max / 32 {
            self.messages = VecDeque::new();
        }
    }
}

/// Bytes before each message kept as a record: its length.
pub(crate) const RECORD_HEADER: usize = 4;

/// Messages kept as records in provided storage: each complete one is its
/// length (`RECORD_HEADER` bytes, big-endian) then its bytes; the one in
/// reassembly comes last, its length written when it completes. A record
/// costs 4 bytes where flow control charges `MESSAGE_OVERHEAD`, so the
/// records fit the bound flow control keeps (plus one header).
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct Records {
    /// Complete messages.
    count: u32,
    /// A message is in reassembly (its header is in the queue).
    open: bool,
    /// Bytes of the message in reassembly.
    open_len: u32,
}

/// Whether an empty, unshared buffer may be kept in the spare pool: its
/// whole allocation is at most `max` bytes. `capacity` alone does not say:
/// it leaves out a prefix consumed by `advance`, which `try_reclaim` takes
/// back (it succeeds only if the allocation is larger than `max`).
pub(super) fn fits_the_pool(b: &mut BytesMut, max: usize) -> bool {
    debug_assert!(b.is_empty());
    !b.try_reclaim(max + 1) && b.capacity() <= max
}

/// The decoder's cursor and the received data held for the application.
#[derive(Debug, Clone)]
pub(crate) struct Rx {
    /// The buffers, boxed and present only while something is in them (or
    /// until the driver trims them).
    pub(super) bufs: Lazy<RxBufs>,
    /// Bytes still owed by a streamed body (at most a frame, 16 MiB). The
    /// three counters are `u32`, 8 bytes less per session than `usize`:
    /// `Config::validate` bounds the receive buffer by `MAX_RECV_BUFFER`,
    /// so what they count fits.
    body_left: u32,
    body: Body,
    /// The input a control frame in `partial` was classified as when its
    /// header passed the checks.
    checked: Option<Input>,
    /// DATA bytes held for the application (FIONREAD).
    pub(crate) queued: u32,
    /// Complete messages' bytes plus `MESSAGE_OVERHEAD` each.
    pub(super) messages_charge: u32,
    /// Four flags in one byte (see the `FLAG_*` constants), so that `Rx`
    /// is 24 bytes, not 32 (issue 10: idle memory).
    flags: Flags,
}

/// FD_READ was posted and not yet answered by a read.
const FLAG_READABLE_POSTED: u8 = 1;
/// Stream mode, opted in by the driver: DATA stays in the transport until
/// the application reads it with `recv_direct`.
const FLAG_DIRECT: u8 = 2;
/// The last offer was not taken whole: DATA waits for the application.
const FLAG_HELD: u8 = 4;
/// A sealed DATA frame has been delivered: the stream buffer may then
/// overshoot its bound by less than one frame.
const FLAG_SEALED_SEEN: u8 = 8;
/// Received bytes did not fit a provided buffer (a sizing defect: the
/// bounds make it impossible): the session ends with
/// [`Violation::BuffersExhausted`] instead of dropping them.
const FLAG_EXHAUSTED: u8 = 16;

impl Rx {
    pub(crate) fn new() -> Self {
        Self {
            bufs: Lazy::empty(),
            body_left: 0,
            body: Body::Skip,
            checked: None,
            queued: 0,
            messages_charge: 0,
            flags: Flags::default(),
        }
    }

    /// FD_READ was posted and not yet answered by a read.
    pub(super) fn readable_posted(&self) -> bool {
        self.flags.get(FLAG_READABLE_POSTED)
    }

    pub(super) fn set_readable_posted(&mut self, on: bool) {
        self.flags.set(FLAG_READABLE_POSTED, on);
    }

    /// Direct receive (stream mode): DATA stays in the transport until read.
    pub(super) fn direct(&self) -> bool {
        self.flags.get(FLAG_DIRECT)
    }

    pub(super) fn set_direct(&mut self, on: bool) {
        self.flags.set(FLAG_DIRECT, on);
    }

    /// The last offer was not taken whole.
    pub(super) fn held(&self) -> bool {
        self.flags.get(FLAG_HELD)
    }

    pub(super) fn set_held(&mut self, on: bool) {
        self.flags.set(FLAG_HELD, on);
    }

    /// A sealed DATA frame has been delivered.
    pub(crate) fn sealed_seen(&self) -> bool {
        self.flags.get(FLAG_SEALED_SEEN)
    }

    pub(super) fn set_sealed_seen(&mut self, on: bool) {
        self.flags.set(FLAG_SEALED_SEEN, on);
    }

    /// Received bytes did not fit a provided buffer.
    fn exhausted(&self) -> bool {
        self.flags.get(FLAG_EXHAUSTED)
    }

    /// Notes whether a write of received bytes fit.
    fn note_fit(&mut self, fit: bool) {
        if !fit {
            self.flags.set(FLAG_EXHAUSTED, true);
        }
    }

    /// The buffers for writing, created if absent, marked as touched.
    pub(super) fn bufs_mut(&mut self) -> &mut RxBufs {
        let b = self.bufs.make();
        b.touched = true;
        b
    }

    pub(crate) fn partial_len(&self) -> usize {
        self.bufs.get().map_or(0, |b| b.partial.len())
    }

    pub(crate) fn messages_len(&self) -> usize {
        self.bufs.get().map_or(0, RxBufs::messages_len)
    }

    pub(crate) fn stream_len(&self) -> usize {
        self.bufs.get().map_or(0, RxBufs::stream_len)
    }

    /// Bytes of the message in reassembly.
    pub(crate) fn message_len(&self) -> usize {
        self.bufs.get().map_or(0, RxBufs::message_len)
    }

    /// Memory held for the application, as flow control counts it.
    pub(crate) fn charge(&self) -> usize {
        self.stream_len() + self.message_len() + self.messages_charge as usize
    }

    /// Whether the stream ends inside a frame.
    pub(crate) fn mid_frame(&self) -> bool {
        self.partial_len() > 0 || self.body_left > 0
    }

    /// A DATA frame's payload is still arriving (streamed, or a sealed
    /// frame being assembled).
    pub(crate) fn data_in_progress(&self) -> bool {
        (self.body_left > 0 && matches!(self.body, Body::Data { .. }))
            || (self.partial_len() > 0 && self.checked == Some(Input::RecvData))
    }

    /// Clears a frame header assembled in `partial` (its body streams).
    fn drop_partial_bytes(&mut self) {
        if let Some(b) = self.bufs.get_mut() {
            b.partial.clear();
        }
    }

    pub(crate) fn drop_partial(&mut self) {
        if let Some(b) = self.bufs.get_mut() {
            b.partial.clear();
        }
        self.checked = None;
        self.body_left = 0;
    }

    pub(crate) fn discard(&mut self) {
        if let Some(b) = self.bufs.get_mut() {
            b.clear_data();
        }
        self.queued = 0;
        self.messages_charge = 0;
    }
}

/// Where DATA payloads go.
enum Sink<'a> {
    /// Into the session's buffers, within the flow-control bound.
    Buffer,
    /// Into the application's buffer (zero-copy receive).
    Direct(&'a mut [u8], usize),
}

impl Session {
    /// The one decode loop. Returns (bytes of `input` consumed, bytes written
    /// to the direct sink).
    pub(super) fn receive(
        &mut self,
        now: Instant,
        input: &[u8],
        out: Option<&mut [u8]>,
    ) -> (usize, usize) {
        let mut sink = match out {
            Some(o) => Sink::Direct(o, 0),
            None => Sink::Buffer,
        };
        let mut at = 0;
        while self.state.parses_frames()
            && !self.rx.exhausted()
            && self.decode_one(now, input, &mut at, &mut sink)
        {}
        if self.rx.exhausted() {
            // Never silently: bytes a provided buffer could not hold end
            // the session, visibly (the bounds that size it make this a
            // defect, which debug builds assert on where it happens).
            self.rx.flags.set(FLAG_EXHAUSTED, false);
            self.violate(now, Violation::BuffersExhausted);
        }
        if !self.state.parses_frames() {
            // Everything until the FIN is ignored (§5.3).
            at = input.len();
        }
        let written = match sink {
            Sink::Direct(_, w) => w,
            Sink::Buffer => 0,
        };
        if at > 0 {
            // Liveness is what the transport delivers, not what was read (§7).
            if let Some(k) = self.keepalive() {
                self.timers.restart_if_armed(TimerId::Idle, now, k * 3);
            }
        }
        if !input.is_empty() {
            let held = at < input.len();
            self.rx.set_held(held);
            let idle = self.keepalive().map_or(Duration::ZERO, |k| k * 3);
            self.timers.suspend_idle(held, now, idle);
            if held && self.rx.direct() {
                // DATA waits in the transport: tell the application (FD_READ),
                // again after a read that left some, as Winsock re-posts it.
                self.post_readable();
            }
        }
        (at, written)
    }

    /// Decodes what it can at `*at`; returns whether to go on.
    fn decode_one(
        &mut self,
        now: Instant,
        input: &[u8],
        at: &mut usize,
        sink: &mut Sink<'_>,
    ) -> bool {
        if self.rx.body_left > 0 {
            return self.decode_body(now, input, at, sink);
        }
        let mut header = [0u8; SEALED_HEADER_LEN];
        let in_partial = self.rx.partial_len() > 0;
        let Some(hl) = self.read_header(input, at, sink, in_partial, &mut header) else {
            return false;
        };
        let frame = Frame::new_unchecked(&header[..hl]);
        let frame_type = frame.frame_type();
        // A frame resumed from `partial` was checked when its header came in,
        // against the limits in force then (they may have shrunk since, with
        // an ACCEPT; the peer sent under the old ones).
        let checked = if in_partial { self.rx.checked } else { None };
        let input_kind = match checked {
            Some(k) => k,
            None => match self.check_header(now, &header[..hl]) {
                Some(k) => k,
                None => return false, // refused: the session has ended or is rejecting
            },
        };
        match frame_type {
            FrameType::Data | FrameType::Unknown(_) => {
                self.start_body(now, input, at, sink, in_partial, &header[..hl], input_kind)
            }
            _ => {
                self.rx.checked = Some(input_kind);
                let len = frame.body_len();
                self.take_control(now, input, at, in_partial, hl + len as usize, sink)
            }
        }
    }

    /// The body of the frame in progress: DATA delivered (as far as there is
    /// room), an unknown frame's skipped.
    #[inline]
    fn decode_body(
        &mut self,
        now: Instant,
        input: &[u8],
        at: &mut usize,
        sink: &mut Sink<'_>,
    ) -> bool {
        let avail = input.len() - *at;
        let n = match self.rx.body {
            Body::Skip => (self.rx.body_left as usize).min(avail),
            Body::Data { .. } => (self.rx.body_left as usize)
                .min(avail)
                .min(self.data_room(sink)),
        };
        if n == 0 {
            return false;
        }
        let chunk = &input[*at..*at + n];
        *at += n;
        // `n` is at most `body_left`.
        self.rx.body_left -= n as u32;
        if let Body::Data { end_of_message } = self.rx.body {
            if self.flags.get(Self::APP_CLOSED) && matches!(sink, Sink::Buffer) {
                // The rest of a frame whose header came before close():
                // nobody will read it, so tell the sender (§5.3).
                self.fire(now, Input::RecvDataAfterClose, Args::default());
                return true;
            }
            self.take_payload(chunk, sink);
            if self.rx.body_left == 0 && end_of_message {
                self.end_message();
            }
        }
        true
    }

    /// The next header, 6 bytes or 10 when sealed, into `header`: straight
    /// from the input, or assembled in `partial` across inputs. `None` if it
    /// is not all here yet, or if DATA has no room (then even its header
    /// stays in the transport).
    #[inline]
    fn read_header(
        &mut self,
        input: &[u8],
        at: &mut usize,
        sink: &mut Sink<'_>,
        in_partial: bool,
        header: &mut [u8; SEALED_HEADER_LEN],
    ) -> Option<usize> {
        let avail = input.len() - *at;
        // The header: straight from the input, or assembled in `partial`;
        // 6 bytes, or 10 when sealed (its check, §2.5).
        if !in_partial
            && avail > 0
            && FrameType::from(input[*at]) == FrameType::Data
            && state::row(self.state, Input::RecvData).is_some()
            && self.data_room(sink) == 0
        {
            // No room for DATA: leave even its header in the transport, so
            // that the bytes still to read keep the driver offering them
            // (a header parked here would never be offered again). Empty
            // stream DATA has no effect and needs no room.
            let empty_stream = self.mode() == Mode::Stream && avail >= HEADER_LEN && {
                let f = Frame::new_unchecked(&input[*at..*at + HEADER_LEN]);
                payload_len(f.flags(), f.body_len()) == 0
            };
            if !empty_stream {
                return None;
            }
        }
        let direct_len = (avail >= HEADER_LEN).then(|| header_len(input[*at + 1]));
        let hl = if !in_partial && direct_len.is_some_and(|hl| avail >= hl) {
            let hl = direct_len.unwrap_or(HEADER_LEN);
            header[..hl].copy_from_slice(&input[*at..*at + hl]);
            hl
        } else {
            // Assemble 6 bytes, learn from the flags whether 4 more follow,
            // then assemble those.
            let mut want = HEADER_LEN;
            loop {
                let have = self.rx.partial_len();
                if have >= HEADER_LEN {
                    want = self
                        .rx
                        .bufs
                        .get()
                        .map_or(HEADER_LEN, |b| header_len(b.partial[1]));
                }
                if have >= want {
                    break;
                }
                let n = (want - have).min(input.len() - *at);
                if n == 0 {
                    return None;
                }
                // Touches the buffers only when there are bytes to keep.
                let fit = self
                    .rx
                    .bufs_mut()
                    .partial
                    .extend_from_slice(&input[*at..*at + n]);
                self.rx.note_fit(fit);
                *at += n;
                if !fit {
                    return None;
                }
            }
            // Assembled above (at least `want` bytes): read, not written.
            match self.rx.bufs.get().and_then(|b| b.partial.get(..want)) {
                Some(h) => header[..want].copy_from_slice(h),
                None => return None,
            }
            want
        };
        Some(hl)
    }

    /// A checked DATA or unknown frame's header: its body is taken next
    /// (DATA delivered, an unknown frame skipped), or, sealed, the whole
    /// frame is assembled and verified first (§2.5).
    #[allow(clippy::too_many_arguments)]
    #[inline]
    fn start_body(
        &mut self,
        now: Instant,
        input: &[u8],
        at: &mut usize,
        sink: &mut Sink<'_>,
        in_partial: bool,
        header: &[u8],
        input_kind: Input,
    ) -> bool {
        let hl = header.len();
        let frame = Frame::new_unchecked(header);
        let (frame_type, fl, len) = (frame.frame_type(), frame.flags(), frame.body_len());
        let eom = fl & flags::END_OF_MESSAGE != 0;
        if frame_type == FrameType::Data
            && input_kind == Input::RecvData
            && (payload_len(fl, len) > 0 || self.mode() == Mode::Message)
            && self.data_room(sink) == 0
        {
            // No room: leave the frame in the transport (a header
            // already assembled stays in `partial`) until the
            // application has read.
            return false;
        }
        if fl & flags::CRC32C != 0 {
            // Sealed: assembled whole and verified before a byte of
            // it is delivered or skipped, or acted on after close
            // (§2.5); bounded by the frame limit checked above.
            self.rx.checked = Some(input_kind);
            let total = hl + len as usize;
            return self.take_control(now, input, at, in_partial, total, sink);
        }
        if !in_partial {
            *at += HEADER_LEN;
        }
        self.rx.drop_partial_bytes();
        if input_kind == Input::RecvDataAfterClose {
            self.fire(now, input_kind, Args::default());
            return true;
        }
        if frame_type == FrameType::Data {
            self.fire(now, input_kind, Args::default());
            self.rx.body = Body::Data {
                end_of_message: eom,
            };
            self.rx.body_left = len;
            if len == 0 && eom {
                self.end_message();
            }
        } else {
            trace!(
                "session {}: skipping unknown frame {} of {} bytes",
                self.id, frame_type, len
            );
            self.fire(
                now,
                input_kind,
                Args {
                    frame: Some(frame_type),
                    ..Args::default()
                },
            );
            self.rx.body = Body::Skip;
            self.rx.body_left = len;
        }
        true
    }

    /// Checks a header (6 bytes, or 10 when sealed) against the state, then
    /// the limits, before any body is waited for. Order (§2.4, §2.5, §5.5):
    /// with integrity in force, an unsealed header; a sealed header's check;
    /// then, the header's bytes trusted, the reserved type; unknown type with
    /// MUST_UNDERSTAND; frame illegal in the state; body over its limit (for
    /// CONNECT: REJECT(`DATA_TOO_LARGE`)); message over its limit. So damage
    /// to a header, while integrity is in force, is always reported as
    /// `INTEGRITY_FAILURE`, never as the check it would otherwise fail.
    fn check_header(&mut self, now: Instant, header: &[u8]) -> Option<Input> {
        let frame = Frame::new_unchecked(header);
        let (t, fl, len) = (frame.frame_type(), frame.flags(), frame.body_len());
        if fl & flags::CRC32C == 0 && self.integrity_in_force() {
            return self.unsealed(now, t);
        }
        if let Err(e) = bookend_wire::verify_header(header) {
            self.violate(now, Violation::Malformed(e));
            return None;
        }
        if fl & flags::CRC32C != 0 && (len as usize) < TRAILER_LEN {
            // A sealed frame with no room for its trailer, from the header.
            self.violate(now, Violation::Malformed(WireError::MissingTrailer));
            return None;
        }
        let input = match t {
            FrameType::Unknown(0) => {
                self.violate(now, Violation::Malformed(WireError::ReservedFrameType));
                return None;
            }
            FrameType::Unknown(code) if fl & flags::MUST_UNDERSTAND != 0 => {
                self.violate(
                    now,
                    Violation::Malformed(WireError::UnknownCriticalFrame { frame_type: code }),
                );
                return None;
            }
            FrameType::Unknown(_) => Input::RecvUnknown,
            FrameType::Connect => Input::RecvConnect,
            FrameType::Accept => Input::RecvAccept,
            FrameType::Reject => Input::RecvReject,
            FrameType::Data => {
                let message = self.mode() == Mode::Message;
                if self.flags.get(Self::APP_CLOSED) && (message || payload_len(fl, len) > 0) {
                    Input::RecvDataAfterClose
                } else {
                    Input::RecvData
                }
            }
            FrameType::Disconnect => Input::RecvDisconnect,
            FrameType::Abort => Input::RecvAbort,
            FrameType::Ping => Input::RecvPing,
        };
        if state::row(self.state, input).is_none() {
            self.violate(
                now,
                Violation::UnexpectedFrame {
                    frame: t,
                    state: self.state,
                },
            );
            return None;
        }
        let max = self.params().limits().max_wire_body_len(t, fl);
        if len > max {
            if t == FrameType::Connect {
                debug!(
                    "session {}: CONNECT of {} bytes over its limit {}: refused from its header",
                    self.id, len, max
                );
                self.refuse_connect(now, Reason::DATA_TOO_LARGE, None);
            } else {
                let e = WireError::FrameTooLarge {
                    frame_type: t,
                    len,
                    max,
                };
                self.violate(now, Violation::Malformed(e));
            }
            return None;
        }
        if t == FrameType::Data && self.mode() == Mode::Message {
            let max = self.params.max_message_size;
            let payload = if fl & flags::CRC32C != 0 {
                (len as usize).saturating_sub(TRAILER_LEN)
            } else {
                len as usize
            };
            if self.rx.message_len() + payload > max as usize {
                self.violate(now, Violation::MessageTooLarge { max });
                return None;
            }
        }
        Some(input)
    }

    /// Takes a whole control frame of `total` bytes, from the input or
    /// assembled in `partial`, and hands it to the machine.
    fn take_control(
        &mut self,
        now: Instant,
        input: &[u8],
        at: &mut usize,
        in_partial: bool,
        total: usize,
        sink: &mut Sink<'_>,
    ) -> bool {
        let avail = input.len() - *at;
        if !in_partial && avail >= total {
            let bytes = &input[*at..*at + total];
            *at += total;
            self.rx.checked = None;
            return self.decoded(now, bytes, sink);
        }
        // The bytes to keep now: the header if it came whole from the input
        // (6 or 10 bytes), and what there is of the body. The buffer grows
        // as they arrive, within the frame bound, not by doubling past it.
        let header = if in_partial {
            0
        } else {
            header_len(input[*at + 1])
        };
        let have = self.rx.partial_len() + header;
        let n = (total - have).min(input.len() - *at - header);
        let p = self.params();
        let config = &self.config;
        let partial = &mut self.rx.bufs_mut().partial;
        let fit = partial.reserve_within(header + n, || Bounds::new(config, &p).partial)
            && partial.extend_from_slice(&input[*at..*at + header + n]);
        *at += header + n;
        let complete = partial.len() >= total;
        self.rx.note_fit(fit);
        if !fit || !complete {
            return false;
        }
        let buf: Queue = core::mem::take(&mut self.rx.bufs_mut().partial);
        self.rx.checked = None;
        let go_on = self.decoded(now, &buf, sink);
        // Keep the allocation for the next frame; a transition may already
        // have dropped what was there.
        let mut buf = buf;
        buf.clear();
        self.rx.bufs_mut().partial = buf;
        go_on
    }

    fn decoded(&mut self, now: Instant, bytes: &[u8], sink: &mut Sink<'_>) -> bool {
        // Whether the frame came sealed (its CRC is checked by the parse):
        // an ACCEPT granting integrity must (§2.5).
        let sealed = bytes.get(1).is_some_and(|f| f & flags::CRC32C != 0);
        // A CONNECT's own check (§2.4 check 6, §2.5) is read only from a
        // frame that passed its trailer, so a sealed CONNECT (rare: senders
        // do not seal it) has its trailer checked here first; every other
        // sealed frame has it checked once, by the parse below.
        let connect = bytes.first() == Some(&u8::from(FrameType::Connect));
        if connect
            && sealed
            && let Err(e) = bookend_wire::verify(bytes)
        {
            self.violate(now, Violation::Malformed(e));
            return false;
        }
        if connect && let Err(e) = bookend_wire::verify_connect(bytes) {
            self.violate(now, Violation::Malformed(e));
            return false;
        }
        // The length was checked from the header, against the limits in force
        // then (`check_header`); the body is only parsed here.
        let any = Limits::new(MAX_FRAME_SIZE, MAX_USER_DATA, MAX_USER_DATA).unwrap_or_default();
        match decode(bytes, &any) {
            Ok(Decoded::Frame { repr, .. }) => {
                self.on_frame(now, repr, sink, sealed);
                true
            }
            Ok(Decoded::Incomplete { .. }) => {
                // Cannot happen: `bytes` is exactly one frame by its header.
                self.violate(now, Violation::Malformed(WireError::Truncated));
                false
            }
            Err(WireError::UnknownCriticalOption { .. }) if bytes.first() == Some(&0x01) => {
                // A CONNECT we cannot serve is answered with REJECT (§6.3),
                // sealed if it proposed integrity: the proposal is read
                // wherever it sits, the unknown option before it or not.
                let proposal = bookend_wire::connect_integrity_proposal(bytes);
                self.refuse_connect(now, Reason::OPTION_UNSUPPORTED, Some(proposal));
                false
            }
            Err(e) => {
                self.violate(now, Violation::Malformed(e));
                false
            }
        }
    }

    fn on_frame(&mut self, now: Instant, repr: FrameRepr<'_>, sink: &mut Sink<'_>, sealed: bool) {
        trace!("session {}: received {}", self.id, repr.frame_type());
        match repr {
            FrameRepr::Connect(c) => self.on_connect(now, c),
            FrameRepr::Accept(a) => self.on_accept(now, a, sealed),
            FrameRepr::Reject(r) => {
                self.cold.make().refusal = Some(r.reason);
                let args = Args {
                    reason: Some(r.reason),
                    peer_data: r.data.map(Bytes::copy_from_slice),
                    ..Args::default()
                };
                self.fire(now, Input::RecvReject, args);
            }
            FrameRepr::Disconnect { data } => {
                if self.rx.message_len() > 0 {
                    return self.violate(now, Violation::UnterminatedMessage);
                }
                self.peer_disconnect = PeerDisconnect::Ready;
                if let Some(d) = data {
                    self.cold.make().peer_disconnect = Some(Bytes::copy_from_slice(d));
                }
                self.fire(now, Input::RecvDisconnect, Args::default());
            }
            FrameRepr::Abort(r) => {
                let args = Args {
                    reason: Some(r.reason),
                    peer_data: r.data.map(Bytes::copy_from_slice),
                    ..Args::default()
                };
                self.fire(now, Input::RecvAbort, args);
            }
            FrameRepr::Ping => self.fire(now, Input::RecvPing, Args::default()),
            // Unsealed ones are streamed and never get here; sealed ones
            // were assembled and have passed their CRC (§2.5).
            FrameRepr::Data {
                end_of_message,
                payload,
            } => {
                let message = self.mode() == Mode::Message;
                if self.flags.get(Self::APP_CLOSED) && (message || !payload.is_empty()) {
                    // Nobody will read it: tell the sender (§5.3).
                    return self.fire(now, Input::RecvDataAfterClose, Args::default());
                }
                self.fire(now, Input::RecvData, Args::default());
                if !self.is_closed() {
                    self.rx.set_sealed_seen(true);
                    self.take_payload(payload, sink);
                    if end_of_message {
                        self.end_message();
                    }
                }
            }
            FrameRepr::Unknown { frame_type, .. } => {
                trace!(
                    "session {}: skipping unknown sealed frame type {}",
                    self.id, frame_type
                );
                let args = Args {
                    frame: Some(FrameType::Unknown(frame_type)),
                    ..Args::default()
                };
                self.fire(now, Input::RecvUnknown, args);
            }
        }
    }

    /// Refuses a CONNECT with REJECT(`reason`); `proposal` is its
    /// `INTEGRITY` proposal, `None` when refused from the header alone (the
    /// row's integrity rule seals the REJECT by it, §2.5).
    fn refuse_connect(&mut self, now: Instant, reason: Reason, proposal: Option<Integrity>) {
        debug!("session {}: unservable CONNECT: {}", self.id, reason);
        let args = Args {
            reason: Some(reason),
            integrity: proposal,
            ..Args::default()
        };
        self.fire(now, Input::RecvUnacceptableConnect, args);
    }

    fn on_connect(&mut self, now: Instant, c: ConnectRepr<'_>) {
        let proposed = Options::from_proposal(&c.options);
        let unservable = if !(c.min_version..=c.max_version).contains(&VERSION) {
            Some(Reason::VERSION_UNSUPPORTED)
        } else if c
            .data
            .is_some_and(|d| d.len() > self.config.options.max_connect_data as usize)
        {
            Some(Reason::DATA_TOO_LARGE)
        } else if !self.config.offers(proposed.mode) {
            // §4.2: the mode is never negotiated down.
            Some(Reason::OPTION_UNSUPPORTED)
        } else if self.config.require_integrity && proposed.integrity != Integrity::Crc32c {
            Some(Reason::INTEGRITY_REQUIRED)
        } else {
            None
        };
        if let Some(reason) = unservable {
            return self.refuse_connect(now, reason, Some(proposed.integrity));
        }
        self.cold.make().proposed = Some(proposed);
        let args = Args {
            options: Some(self.config.options.grant_for(&proposed)),
            peer_data: c.data.map(Bytes::copy_from_slice),
            integrity: Some(proposed.integrity),
            ..Args::default()
        };
        self.fire(now, Input::RecvConnect, args);
    }

    fn on_accept(&mut self, now: Instant, a: AcceptRepr<'_>, sealed: bool) {
        let proposed = self.proposed();
        let granted = Options::from_grant(&a.options, &proposed);
        let data_ok = a
            .data
            .is_none_or(|d| d.len() <= proposed.max_connect_data as usize);
        if a.version != VERSION || !granted.is_valid_grant_for(&proposed) || !data_ok {
            return self.violate(now, Violation::InvalidAccept);
        }
        if granted.integrity == Integrity::Crc32c && !sealed {
            // A conforming callee seals the ACCEPT that grants integrity: an
            // unsealed one had its flag bit damaged, and its trailer would be
            // taken for callee data.
            return self.violate(
                now,
                Violation::Unsealed {
                    frame: FrameType::Accept,
                },
            );
        }
        // From here on we seal exactly when integrity was granted: the
        // rows' integrity rule (§2.5).
        if self.config.require_integrity && granted.integrity != Integrity::Crc32c {
            debug!("session {}: integrity required and not granted", self.id);
            let args = Args {
                integrity: Some(granted.integrity),
                ..Args::default()
            };
            self.fire(now, Input::RecvUnacceptableAccept, args);
            return;
        }
        self.set_params(granted);
        self.flags.set(Self::NEGOTIATED, true);
        let args = Args {
            peer_data: a.data.map(Bytes::copy_from_slice),
            integrity: Some(granted.integrity),
            ..Args::default()
        };
        self.fire(now, Input::RecvAccept, args);
    }

    /// Room for DATA payload in the sink now. Buffered, the session stops
    /// only when the application has something to read (so a full buffer
    /// can never deadlock): stream bytes, or complete messages; a message in
    /// reassembly is bounded by `max_message_size` instead.
    fn data_room(&self, sink: &Sink<'_>) -> usize {
        match sink {
            Sink::Direct(out, written) => out.len() - written,
            Sink::Buffer if self.stops_at_data() => 0,
            Sink::Buffer => match self.mode() {
                Mode::Stream => self.config.recv_buffer.saturating_sub(self.rx.stream_len()),
                Mode::Message if self.rx.messages_charge as usize >= self.config.recv_buffer => 0,
                Mode::Message => usize::MAX,
            },
        }
    }

    fn take_payload(&mut self, chunk: &[u8], sink: &mut Sink<'_>) {
        match sink {
            Sink::Direct(out, written) => {
                let n = chunk.len().min(out.len() - *written);
                out[*written..*written + n].copy_from_slice(&chunk[..n]);
                *written += n;
                if n < chunk.len() {
                    // Only a sealed frame, verified whole, can be longer than
                    // the room: the rest waits in the session's buffer, which
                    // `recv` reads before any further direct read.
                    self.take_payload(&chunk[n..], &mut Sink::Buffer);
                }
            }
            Sink::Buffer => {
                if chunk.is_empty() {
                    return;
                }
                // A chunk of one frame (≤ 16 MiB); the total is bounded by
                // the receive buffer (see `Rx::body_left`).
                self.rx.queued += chunk.len() as u32;
                match self.mode() {
                    Mode::Stream => {
                        // Grown within the stream's bound (the receive
                        // buffer plus one sealed frame), so that what a peer
                        // can make the heap hold is that bound.
                        let p = self.params();
                        let config = &self.config;
                        let stream = &mut self.rx.bufs_mut().stream;
                        let limit = || config.recv_buffer + Bounds::new(config, &p).data_body;
                        let fit = stream.reserve_within(chunk.len(), limit)
                            && stream.extend_from_slice(chunk);
                        self.rx.note_fit(fit);
                        self.post_readable();
                    }
                    Mode::Message => {
                        let fit = self.rx.bufs_mut().push_message_bytes(chunk);
                        self.rx.note_fit(fit);
                    }
                }
            }
        }
    }

    fn end_message(&mut self) {
        if self.mode() != Mode::Message {
            return;
        }
        let Some(len) = self.rx.bufs_mut().complete_message() else {
            self.rx.note_fit(false);
            return;
        };
        self.rx.messages_charge += (len + MESSAGE_OVERHEAD) as u32;
        self.post_readable();
    }

    pub(super) fn post_readable(&mut self) {
        // `Closed` is the last event: after it, data stays readable but is not announced.
        if !self.rx.readable_posted() && !self.is_closed() {
            self.rx.set_readable_posted(true);
            self.events.push(super::EventKind::Readable);
        }
    }

    /// A read took the last of what was readable: a `Readable` still queued
    /// (re-posted by an earlier read that left some, Winsock's re-enabled
    /// FD_READ) announces nothing any more and is withdrawn, so that the
    /// application never polls FD_READ with nothing to read, after FD_CLOSE
    /// least of all (`Event::Readable`'s contract).
    pub(super) fn withdraw_readable_if_drained(&mut self) {
        if !self.has_unread() {
            self.events.remove(super::EventKind::Readable);
            self.rx.set_readable_posted(false);
        }
    }

    /// Whether received data waits for the application: buffered, or held
    /// in the transport for direct receive. Closing then is an abort (§5.3).
    pub(super) fn has_unread(&self) -> bool {
        // Only from OPEN on can DATA have been received (the table test
        // `close_with_unread_data_never_ends_gracefully` derives the same
        // states), whatever the receive flags say.
        self.state.may_hold_data()
            && (self.rx.queued > 0
                || self.rx.message_len() > 0
                || (self.rx.held() && self.rx.direct())
                || self.rx.data_in_progress())
    }

    /// Whether every received frame must be sealed: integrity was granted
    /// and the ACCEPT that granted it was sent (callee) or received (caller).
    pub(super) fn integrity_in_force(&self) -> bool {
        self.flags.get(Self::NEGOTIATED) && self.flags.get(Self::SEALED)
    }

    /// An unsealed frame while integrity is in force: refused from its
    /// header, since a flip of the flag bit itself must not let damage in.
    fn unsealed(&mut self, now: Instant, frame: FrameType) -> Option<Input> {
        self.violate(now, Violation::Unsealed { frame });
        None
    }

    fn stops_at_data(&self) -> bool {
        self.rx.direct()
            && !self.flags.get(Self::APP_CLOSED)
            && self.mode() == Mode::Stream
            && state::row(self.state, Input::RecvData).is_some()
    }
}
