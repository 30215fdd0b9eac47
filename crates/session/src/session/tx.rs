//! The send side: encoded bytes waiting for the transport, and our FIN/RST.

use bookend_wire::{
    FrameRepr, FrameType, HEADER_LEN, SEALED_HEADER_LEN, SEALED_OVERHEAD, crc32c_parts,
    emit_header, emit_sealed_header, flags, header_len, seal_connect,
};
use bytes::Bytes;

use super::TransportAction;
use super::lazy::Lazy;
use super::queue::Queue;

/// Our FIN or RST: not wanted, wanted once the queued bytes are out, or done.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Pending {
    No,
    Queued,
    Done,
}

/// Encoded frames for the transport, in order, then FIN or RST.
#[derive(Debug, Clone)]
pub(crate) struct Tx {
    /// Boxed and present only while used (or until the driver trims it).
    pub(super) buf: Lazy<Queue>,
    fin: Pending,
    rst: Pending,
    /// [`Tx::SHARED`], [`Tx::TOUCHED`], [`Tx::WRITABLE_WANTED`],
    /// [`Tx::SEAL`]: one byte, so that `head_left` fits in the session's
    /// budget (issue 10: idle memory).
    bits: u8,
    /// Bytes of the frame at the front of `buf` still to be handed out,
    /// when the transport took only part of it (0: `buf` starts at a frame
    /// boundary). Discarding the unsent bytes keeps them: the part already
    /// handed out is on its way, and an ABORT after a torn frame would be
    /// read by the peer as that frame's body (§3.6, §2).
    pub(crate) head_left: u32,
}

impl Tx {
    /// `buf` shares its storage with `Bytes` handed out by `take`: it must
    /// not go to the spare pool, where it would keep that storage alive.
    const SHARED: u8 = 1;
    /// `buf` was written since it came from the pool: only then may it have
    /// grown, and the pool check need look.
    const TOUCHED: u8 = 2;
    /// A send was refused or cut short: post Writable once there is room.
    const WRITABLE_WANTED: u8 = 4;
    /// Every frame queued from now on is sealed with a CRC-32C trailer
    /// (§2.5). Set by the session: a caller proposing integrity, a callee
    /// answering a sealed CONNECT, either side once integrity is in force.
    const SEAL: u8 = 8;

    fn set(&mut self, bit: u8, on: bool) {
        if on {
            self.bits |= bit;
        } else {
            self.bits &= !bit;
        }
    }

    /// Whether frames queued now are sealed ([`Tx::SEAL`]).
    pub(crate) fn seal(&self) -> bool {
        self.bits & Self::SEAL != 0
    }

    /// Seals the frames queued from now on, or not.
    pub(crate) fn set_seal(&mut self, on: bool) {
        self.set(Self::SEAL, on);
    }

    /// Whether Writable is owed once there is room
    /// ([`Tx::WRITABLE_WANTED`]).
    pub(crate) fn writable_wanted(&self) -> bool {
        self.bits & Self::WRITABLE_WANTED != 0
    }

    /// Owes Writable once there is room, or no longer.
    pub(crate) fn set_writable_wanted(&mut self, on: bool) {
        self.set(Self::WRITABLE_WANTED, on);
    }

    /// Marks `buf` as written since it came from the pool.
    pub(crate) fn set_touched(&mut self) {
        self.set(Self::TOUCHED, true);
    }

    /// Whether `buf` was written since it came from the pool, clearing it.
    pub(crate) fn take_touched(&mut self) -> bool {
        let t = self.bits & Self::TOUCHED != 0;
        self.set(Self::TOUCHED, false);
        t
    }

    /// Whether `buf` shares its storage with `Bytes` handed out, clearing
    /// it.
    pub(crate) fn take_shared(&mut self) -> bool {
        let t = self.bits & Self::SHARED != 0;
        self.set(Self::SHARED, false);
        t
    }

    pub(crate) fn new() -> Self {
        Self {
            buf: Lazy::empty(),
            fin: Pending::No,
            rst: Pending::No,
            bits: 0,
            head_left: 0,
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.buf.get().map_or(0, |b| b.len())
    }

    /// Bytes a DATA frame adds to its payload: header, and header check and
    /// trailer if sealed.
    pub(crate) fn frame_overhead(&self) -> usize {
        HEADER_LEN + if self.seal() { SEALED_OVERHEAD } else { 0 }
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Whether frames may still be queued: not after our FIN or RST.
    pub(crate) fn takes_frames(&self) -> bool {
        self.fin == Pending::No && self.rst == Pending::No
    }

    /// Whether a FIN or RST is wanted and not yet handed over.
    pub(crate) fn action_pending(&self) -> bool {
        self.fin == Pending::Queued || self.rst == Pending::Queued
    }

    /// Queues a control frame. Rows never send after FIN or RST (checked by
    /// the table's tests); a frame then would be a bug, and is dropped.
    pub(crate) fn queue(&mut self, repr: &FrameRepr<'_>) {
        if !self.takes_frames() {
            debug_assert!(false, "{} after FIN or RST", repr.frame_type());
            return;
        }
        self.set_touched();
        let seal = self.seal();
        let buf = self.buf.make();
        let at = buf.len();
        let len = if seal {
            repr.sealed_buffer_len()
        } else {
            repr.buffer_len()
        };
        if !buf.resize(at + len) {
            return;
        }
        // Sized exactly, and every length was checked against the limits
        // before we got here: emit cannot fail.
        let written = if seal {
            repr.emit_sealed(&mut buf[at..])
        } else {
            repr.emit(&mut buf[at..])
        };
        debug_assert_eq!(written.ok(), Some(len));
        // A CONNECT proposing integrity carries the check of its own bytes
        // (§2.5); any other frame is left as it is.
        let _ = seal_connect(&mut buf[at..]);
    }

    /// Queues one DATA frame.
    pub(crate) fn queue_data(&mut self, payload: &[u8], end_of_message: bool) {
        let fl = if end_of_message {
            flags::END_OF_MESSAGE
        } else {
            0
        };
        let (header, hl, trailer) = data_header(payload, fl, self.seal());
        self.set_touched();
        let buf = self.buf.make();
        let total = hl + payload.len() + trailer.map_or(0, |t| t.len());
        // One write of the whole frame: a frame is queued whole or not at
        // all (`hand_out` reads the queue as whole frames).
        if !buf.reserve(total) {
            return;
        }
        let _ = buf.extend_from_slice(&header[..hl]);
        let _ = buf.extend_from_slice(payload);
        if let Some(t) = trailer {
            let _ = buf.extend_from_slice(&t);
        }
    }

    pub(crate) fn request_fin(&mut self) {
        if self.fin == Pending::No {
            self.fin = Pending::Queued;
        }
    }

    pub(crate) fn request_rst(&mut self) {
        if self.rst == Pending::No {
            self.rst = Pending::Queued;
        }
    }

    /// Throws away every byte not yet handed to the transport (§3.6) and
    /// says how many went. The rest of a frame partly handed out is kept:
    /// frames are never torn.
    pub(crate) fn discard_unsent(&mut self) -> usize {
        let keep = self.head_left as usize;
        let Some(buf) = self.buf.get_mut() else {
            return 0;
        };
        let gone = buf.len().saturating_sub(keep);
        buf.truncate(keep);
        gone
    }

    /// Throws away every byte not yet handed to the transport, the rest of
    /// a frame partly handed out included: the RST follows at once (§7).
    pub(crate) fn discard_all(&mut self) {
        if let Some(buf) = self.buf.get_mut() {
            buf.clear();
        }
        self.head_left = 0;
    }

    /// Follows the frames in `buf` over the next `n` bytes to be handed
    /// out: afterwards `head_left` is what remains of the frame they end
    /// in. Every frame is queued whole, so each boundary met has a whole
    /// header after it.
    fn hand_out(&mut self, mut n: usize) {
        let Some(buf) = self.buf.get() else {
            return;
        };
        let mut at = 0;
        while n > 0 {
            if self.head_left == 0 {
                let rest = &buf[at..];
                let total = if rest.len() >= HEADER_LEN {
                    let body = u32::from_be_bytes([rest[2], rest[3], rest[4], rest[5]]);
                    header_len(rest[1]) + body as usize
                } else {
                    // Not a frame header (cannot happen: frames are queued
                    // whole): the rest counts as one.
                    rest.len()
                };
                // A frame is at most 16 MiB and a few bytes (§6.1).
                self.head_left = u32::try_from(total).unwrap_or(u32::MAX);
            }
            let k = n.min(self.head_left as usize);
            self.head_left -= k as u32;
            n -= k;
            at += k;
        }
    }

    /// The transport is gone: nothing will ever be sent.
    pub(crate) fn gone(&mut self) {
        if let Some(buf) = self.buf.get_mut() {
            buf.clear();
        }
        self.head_left = 0;
        self.fin = Pending::Done;
        self.rst = Pending::Done;
    }

    pub(crate) fn copy_out(&mut self, out: &mut [u8]) -> usize {
        let Some(buf) = self.buf.get_mut() else {
            return 0;
        };
        let n = out.len().min(buf.len());
        out[..n].copy_from_slice(&buf[..n]);
        self.hand_out(n);
        if let Some(buf) = self.buf.get_mut() {
            buf.advance(n);
        }
        n
    }

    pub(crate) fn take(&mut self, max: usize) -> Option<Bytes> {
        let n = max.min(self.len());
        if n == 0 {
            return None;
        }
        self.hand_out(n);
        let buf = self.buf.get_mut()?;
        // Heap bytes are handed out shared; provided ones are copied.
        self.bits |= if buf.is_fixed() { 0 } else { Self::SHARED };
        Some(buf.split_to_bytes(n))
    }

    /// The FIN or RST, once every byte before it was taken. RST wins.
    pub(crate) fn poll_action(&mut self) -> Option<TransportAction> {
        if !self.is_empty() {
            return None;
        }
        if self.rst == Pending::Queued {
            self.rst = Pending::Done;
            self.fin = Pending::Done;
            return Some(TransportAction::Reset);
        }
        if self.fin == Pending::Queued {
            self.fin = Pending::Done;
            return Some(TransportAction::Fin);
        }
        None
    }
}

/// The header of a DATA frame carrying `payload` with flags `fl` and its
/// length, and, when `seal`, its CRC-32C trailer (§2.5): the frame is then
/// the sealed header (with its check), payload, trailer. Emitting the
/// header apart lets payloads go straight from the application's buffer
/// into the transport's.
pub(crate) fn data_header(
    payload: &[u8],
    fl: u8,
    seal: bool,
) -> ([u8; SEALED_HEADER_LEN], usize, Option<[u8; 4]>) {
    let mut header = [0u8; SEALED_HEADER_LEN];
    // Payload chunks are at most max_frame_size (≤ 16 MiB): they fit u32,
    // trailer included, and the header buffer is a sealed header long.
    if seal {
        let _ = emit_sealed_header(&mut header, FrameType::Data, fl, payload.len());
        let trailer = crc32c_parts(&[&header, payload]).to_be_bytes();
        (header, SEALED_HEADER_LEN, Some(trailer))
    } else {
        let _ = emit_header(&mut header, FrameType::Data, fl, payload.len() as u32);
        (header, HEADER_LEN, None)
    }
}
