//! The send side: encoded bytes waiting for the transport, and our FIN/RST.

use bookend_wire::{
    FrameRepr, FrameType, HEADER_LEN, SEALED_HEADER_LEN, SEALED_OVERHEAD, crc32c_parts,
    emit_header, emit_sealed_header, flags, seal_connect,
};
use bytes::{Buf, Bytes, BytesMut};
use tracing::trace;

use super::TransportAction;
use super::lazy::Lazy;

/// Our FIN or RST: not wanted, wanted once the queued bytes are out, or done.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Pending {
    No,
    Queued,
    Done,
}

/// Encoded frames for the transport, in order, then FIN or RST.
#[derive(Debug)]
pub(crate) struct Tx {
    /// Boxed and present only while used (or until the driver trims it).
    pub(super) buf: Lazy<BytesMut>,
    /// `buf` shares its storage with `Bytes` handed out by `take`: it must
    /// not go to the spare pool, where it would keep that storage alive.
    pub(super) shared: bool,
    /// `buf` was written since it came from the pool: only then may it have
    /// grown, and the pool check need look.
    pub(super) touched: bool,
    fin: Pending,
    rst: Pending,
    /// A send was refused or cut short: post Writable once there is room.
    pub(crate) writable_wanted: bool,
    /// Every frame queued from now on is sealed with a CRC-32C trailer
    /// (§2.5). Set by the session: a caller proposing integrity, a callee
    /// answering a sealed CONNECT, either side once integrity is in force.
    pub(crate) seal: bool,
}

impl Tx {
    pub(crate) fn new() -> Self {
        Self {
            buf: Lazy::empty(),
            shared: false,
            touched: false,
            fin: Pending::No,
            rst: Pending::No,
            writable_wanted: false,
            seal: false,
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.buf.get().map_or(0, BytesMut::len)
    }

    /// Bytes a DATA frame adds to its payload: header, and header check and
    /// trailer if sealed.
    pub(crate) fn frame_overhead(&self) -> usize {
        HEADER_LEN + if self.seal { SEALED_OVERHEAD } else { 0 }
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
        self.touched = true;
        let buf = self.buf.make();
        let at = buf.len();
        let len = if self.seal {
            repr.sealed_buffer_len()
        } else {
            repr.buffer_len()
        };
        buf.resize(at + len, 0);
        // Sized exactly, and every length was checked against the limits
        // before we got here: emit cannot fail.
        let written = if self.seal {
            repr.emit_sealed(&mut buf[at..])
        } else {
            repr.emit(&mut buf[at..])
        };
        debug_assert_eq!(written.ok(), Some(len));
        // A CONNECT proposing integrity carries the check of its own bytes
        // (§2.5); any other frame is left as it is.
        let _ = seal_connect(&mut buf[at..]);
        trace!(frame = %repr.frame_type(), len, sealed = self.seal, "queued");
    }

    /// Queues one DATA frame.
    pub(crate) fn queue_data(&mut self, payload: &[u8], end_of_message: bool) {
        let fl = if end_of_message {
            flags::END_OF_MESSAGE
        } else {
            0
        };
        let (header, hl, trailer) = data_header(payload, fl, self.seal);
        self.touched = true;
        let buf = self.buf.make();
        buf.reserve(hl + payload.len() + trailer.map_or(0, |t| t.len()));
        buf.extend_from_slice(&header[..hl]);
        buf.extend_from_slice(payload);
        if let Some(t) = trailer {
            buf.extend_from_slice(&t);
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

    /// Throws away every byte not yet handed to the transport (§3.6).
    pub(crate) fn discard_unsent(&mut self) {
        if let Some(buf) = self.buf.get_mut() {
            if !buf.is_empty() {
                trace!(bytes = buf.len(), "discarding unsent bytes");
            }
            buf.clear();
        }
    }

    /// The transport is gone: nothing will ever be sent.
    pub(crate) fn gone(&mut self) {
        if let Some(buf) = self.buf.get_mut() {
            buf.clear();
        }
        self.fin = Pending::Done;
        self.rst = Pending::Done;
    }

    pub(crate) fn copy_out(&mut self, out: &mut [u8]) -> usize {
        let Some(buf) = self.buf.get_mut() else {
            return 0;
        };
        let n = out.len().min(buf.len());
        out[..n].copy_from_slice(&buf[..n]);
        buf.advance(n);
        n
    }

    pub(crate) fn take(&mut self, max: usize) -> Option<Bytes> {
        let buf = self.buf.get_mut()?;
        let n = max.min(buf.len());
        if n == 0 {
            return None;
        }
        self.shared = true;
        Some(buf.split_to(n).freeze())
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
