//! The application's reads: stream bytes, whole messages, and the
//! zero-copy path through the one decoder of [`super::rx`].

use bookend_wire::Mode;
use bytes::Bytes;

use super::Session;
use super::rx::MESSAGE_OVERHEAD;
use crate::error::Error;
use crate::event::CloseReason;
use crate::time::Instant;

impl Session {
    /// Stream mode: reads up to `buf.len()` bytes. After the peer's
    /// DISCONNECT, once every byte before it has been read, returns `Ok(0)`,
    /// and keeps returning it (Winsock's "recv returns zero").
    ///
    /// This function returns `Err(Error::WouldBlock)` when nothing is there
    /// yet, `Err(Error::WrongMode)` in message mode, and the reason the
    /// session ended (`ConnectionReset`, `ConnectionAborted`) or
    /// `NotConnected` otherwise.
    pub fn recv(&mut self, buf: &mut [u8]) -> Result<usize, Error> {
        if self.mode() != Mode::Stream {
            return Err(Error::WrongMode);
        }
        self.rx.set_readable_posted(false);
        if let Some(bufs) = self.rx.bufs.get_mut().filter(|b| !b.stream.is_empty()) {
            // Stream mode: `stream` holds bytes, never message records.
            let n = buf.len().min(bufs.stream.len());
            buf[..n].copy_from_slice(&bufs.stream[..n]);
            bufs.stream.advance(n);
            let more = !bufs.stream.is_empty();
            self.rx.queued -= n as u32;
            if more {
                // Winsock re-posts FD_READ while data remains after a recv.
                self.post_readable();
            } else {
                self.withdraw_readable_if_drained();
            }
            return Ok(n);
        }
        if self.peer_disconnected() {
            return Ok(0);
        }
        Err(self.nothing_to_read())
    }

    /// Stream mode: lets the driver read DATA straight from the transport
    /// into the application's buffer ([`recv_direct`](Self::recv_direct)).
    /// From then on [`handle_bytes`](Self::handle_bytes) stops at DATA frames
    /// (reporting them as not consumed, which keeps them in the transport,
    /// and posting [`Event::Readable`](crate::Event::Readable)) while the
    /// application has not closed.
    pub fn set_direct_receive(&mut self, on: bool) {
        self.rx.set_direct(on && self.mode() == Mode::Stream);
    }

    /// Stream mode, zero-copy receive: takes frames from `wire` (bytes the
    /// transport holds, in order), copying DATA payloads straight into `out`
    /// and handling every other frame as [`handle_bytes`](Self::handle_bytes)
    /// would (the same decoder). Returns `(bytes of wire consumed, bytes
    /// written to out)`; the caller discards the consumed bytes from the
    /// transport. A DATA frame longer than the room in `out` is continued by
    /// the next call.
    ///
    /// It takes nothing, `(0, 0)`, unless direct receive is on and the
    /// session holds no received data of its own (read that with
    /// [`recv`](Self::recv) first, to keep order).
    pub fn recv_direct(&mut self, now: Instant, wire: &[u8], out: &mut [u8]) -> (usize, usize) {
        if !self.rx.direct() || self.mode() != Mode::Stream || self.rx.queued > 0 {
            return (0, 0);
        }
        self.rx.set_readable_posted(false);
        self.receive(now, wire, Some(out))
    }

    /// Message mode: reads the next whole message into `buf`, returning its
    /// length. After the peer's DISCONNECT, once every message has been read,
    /// returns `Err(Error::Disconnected)` (WSAEDISCON).
    ///
    /// This function returns `Err(Error::MessageTruncated)` if the message is
    /// longer than `buf`: it stays queued, nothing is cut. Other errors as
    /// for [`recv`](Self::recv).
    pub fn recv_message(&mut self, buf: &mut [u8]) -> Result<usize, Error> {
        let len = self.peek_message()?;
        if len > buf.len() {
            return Err(Error::MessageTruncated { len });
        }
        self.take_message(Some(&mut buf[..len]));
        Ok(len)
    }

    /// Message mode: takes the next whole message without copying it.
    ///
    /// This function returns the errors of [`recv_message`](Self::recv_message)
    /// except `MessageTruncated`.
    pub fn recv_message_bytes(&mut self) -> Result<Bytes, Error> {
        self.peek_message()?;
        Ok(self.take_message(None).unwrap_or_default())
    }

    fn peek_message(&mut self) -> Result<usize, Error> {
        if self.mode() != Mode::Message {
            return Err(Error::WrongMode);
        }
        self.rx.set_readable_posted(false);
        match self.rx.bufs.get().and_then(|b| b.front_message_len()) {
            Some(len) => Ok(len),
            None if self.peer_disconnected() => Err(Error::Disconnected),
            None => Err(self.nothing_to_read()),
        }
    }

    /// Takes the first message (there is one: `peek_message` said so) into
    /// `out`, as long as it is, or as `Bytes` without `out`.
    fn take_message(&mut self, out: Option<&mut [u8]>) -> Option<Bytes> {
        let bufs = self.rx.bufs.get_mut()?;
        let (len, msg) = bufs.pop_message(out)?;
        let more = bufs.front_message_len().is_some();
        self.rx.queued -= len as u32;
        self.rx.messages_charge -= (len + MESSAGE_OVERHEAD) as u32;
        if more {
            self.post_readable();
        } else {
            self.withdraw_readable_if_drained();
        }
        msg
    }

    pub(super) fn nothing_to_read(&self) -> Error {
        match self.close_reason() {
            Some(CloseReason::Reset) => Error::ConnectionReset,
            Some(
                CloseReason::Aborted { .. }
                | CloseReason::TimedOut(_)
                | CloseReason::ProtocolError { .. },
            ) => Error::ConnectionAborted,
            Some(_) => Error::NotConnected,
            None if self.flags.get(Self::NEGOTIATED) => Error::WouldBlock,
            None => Error::NotConnected,
        }
    }
}
