//! Byte queues on the heap or in storage the application provides
//! ([`SessionBuffers`]), behind one interface, so that the decoder, the
//! reads and the send queue are one code path for both.
//!
//! A provided queue is contiguous, like `BytesMut`: bytes are read from its
//! front and written at its back, and its contents are moved to the start
//! (`copy_within`) when the back has no room left. It never grows: the
//! session sizes it from its configuration's bounds ([`BufferUsage`]), which
//! flow control and the frame limits enforce against any input, so it is
//! never asked for more.
//!
//! [`BufferUsage`]: crate::BufferUsage

use bytes::{Bytes, BytesMut};
use core::fmt;
use core::ops::{Deref, DerefMut};

/// Received or encoded bytes, in order.
pub(crate) enum Queue {
    /// Growing on the heap, as far as the session's bounds allow.
    Heap(BytesMut),
    /// In the application's storage; `start..end` holds the bytes. The
    /// positions are `u32` (a session's buffers are bounded by
    /// `MAX_RECV_BUFFER` and the frame limits), so that this variant fits
    /// beside `BytesMut`'s pointer niche and a `Queue` is no larger than a
    /// `BytesMut` (issue 10: idle memory).
    Fixed {
        buf: &'static mut [u8],
        start: u32,
        end: u32,
    },
}

impl Default for Queue {
    fn default() -> Self {
        Self::Heap(BytesMut::new())
    }
}

impl Clone for Queue {
    /// A clone keeps the bytes but not the storage, which is the original's:
    /// it holds them on the heap.
    fn clone(&self) -> Self {
        Self::Heap(BytesMut::from(&self[..]))
    }
}

impl fmt::Debug for Queue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = if self.is_fixed() { "Fixed" } else { "Heap" };
        f.debug_struct("Queue")
            .field("kind", &kind)
            .field("len", &self.len())
            .field("capacity", &self.capacity())
            .finish()
    }
}

impl Deref for Queue {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        match self {
            Self::Heap(b) => b,
            Self::Fixed { buf, start, end } => &buf[*start as usize..*end as usize],
        }
    }
}

impl DerefMut for Queue {
    fn deref_mut(&mut self) -> &mut [u8] {
        match self {
            Self::Heap(b) => b,
            Self::Fixed { buf, start, end } => &mut buf[*start as usize..*end as usize],
        }
    }
}

impl Queue {
    /// An empty queue in `buf`.
    pub(crate) fn fixed(buf: &'static mut [u8]) -> Self {
        // Positions are `u32`: storage beyond 4 GiB is left unused.
        let len = buf.len().min(u32::MAX as usize);
        Self::Fixed {
            buf: &mut buf[..len],
            start: 0,
            end: 0,
        }
    }

    /// Whether the queue is in provided storage.
    pub(crate) fn is_fixed(&self) -> bool {
        matches!(self, Self::Fixed { .. })
    }

    /// The provided storage, if any, leaving an empty heap queue behind.
    pub(crate) fn take_storage(&mut self) -> Option<&'static mut [u8]> {
        match core::mem::take(self) {
            Self::Fixed { buf, .. } => Some(buf),
            heap => {
                *self = heap;
                None
            }
        }
    }

    /// Bytes of heap the queue holds (its allocation as far as visible).
    pub(crate) fn heap_capacity(&self) -> usize {
        match self {
            Self::Heap(b) => b.capacity(),
            Self::Fixed { .. } => 0,
        }
    }

    /// Bytes it can hold without growing.
    pub(crate) fn capacity(&self) -> usize {
        match self {
            Self::Heap(b) => b.capacity(),
            Self::Fixed { buf, .. } => buf.len(),
        }
    }

    /// The heap buffer, for the spare pool; `None` when provided.
    pub(crate) fn heap_mut(&mut self) -> Option<&mut BytesMut> {
        match self {
            Self::Heap(b) => Some(b),
            Self::Fixed { .. } => None,
        }
    }

    /// Makes room for `n` more bytes at the back: a provided queue moves
    /// its bytes to the start. Returns whether they fit; a provided queue
    /// too small for them is a sizing bug (its bounds are the session's),
    /// caught by a debug assertion and never written past.
    #[must_use]
    pub(crate) fn reserve(&mut self, n: usize) -> bool {
        match self {
            Self::Heap(b) => {
                b.reserve(n);
                true
            }
            Self::Fixed { buf, start, end } => {
                let (s, e) = (*start as usize, *end as usize);
                let len = e - s;
                if len + n > buf.len() {
                    // Unit tests check what release builds do (the session
                    // ends visibly); everywhere else debug builds stop here.
                    #[cfg(not(test))]
                    debug_assert!(
                        false,
                        "provided session buffer of {} bytes asked for {}",
                        buf.len(),
                        len + n
                    );
                    return false;
                }
                if e + n > buf.len() {
                    buf.copy_within(s..e, 0);
                    *start = 0;
                    // At most `buf.len()`, which fits (`Queue::fixed`).
                    *end = len as u32;
                }
                true
            }
        }
    }

    /// As [`Queue::reserve`], but a heap queue that must grow grows by
    /// doubling only up to `limit()` (the queue's bound): `BytesMut` alone
    /// would double past it, holding up to twice the bound a peer can fill.
    /// Room is first taken back from the bytes already read where that is
    /// cheap (`try_reclaim`: as many bytes read as are held). At the bound
    /// with a reader that keeps it nearly full, each frame then costs a new
    /// allocation and a copy of what is held: the price of the bound (a
    /// provided queue pays the copy without the allocation).
    #[must_use]
    pub(crate) fn reserve_within(&mut self, n: usize, limit: impl FnOnce() -> usize) -> bool {
        if let Self::Heap(b) = self {
            let need = b.len() + n;
            if need > b.capacity() && !b.try_reclaim(n) {
                let cap = (2 * b.capacity()).max(need).min(limit().max(need));
                let mut grown = BytesMut::with_capacity(cap);
                grown.extend_from_slice(b);
                *b = grown;
            }
            return true;
        }
        self.reserve(n)
    }

    /// Appends `data`; returns whether it fit (see [`Queue::reserve`]).
    pub(crate) fn extend_from_slice(&mut self, data: &[u8]) -> bool {
        if !self.reserve(data.len()) {
            return false;
        }
        match self {
            Self::Heap(b) => b.extend_from_slice(data),
            Self::Fixed { buf, end, .. } => {
                let e = *end as usize;
                buf[e..e + data.len()].copy_from_slice(data);
                // Within `buf` (checked by `reserve`), so within `u32`.
                *end = (e + data.len()) as u32;
            }
        }
        true
    }

    /// Grows to `len` bytes, the new ones zero (shrinking truncates);
    /// returns whether it fit (see [`Queue::reserve`]).
    pub(crate) fn resize(&mut self, len: usize) -> bool {
        let have = self.len();
        if len <= have {
            self.truncate(len);
            return true;
        }
        if !self.reserve(len - have) {
            return false;
        }
        match self {
            Self::Heap(b) => b.resize(len, 0),
            Self::Fixed { buf, start, end } => {
                let new_end = *start as usize + len;
                buf[*end as usize..new_end].fill(0);
                *end = new_end as u32;
            }
        }
        true
    }

    /// Drops the first `n` bytes (at most all).
    pub(crate) fn advance(&mut self, n: usize) {
        match self {
            Self::Heap(b) => bytes::Buf::advance(b, n.min(b.len())),
            Self::Fixed { start, end, .. } => {
                *start = (*start as usize + n).min(*end as usize) as u32;
                if *start == *end {
                    // Empty: the next bytes go to the start, no move needed.
                    *start = 0;
                    *end = 0;
                }
            }
        }
    }

    /// Keeps the first `len` bytes.
    pub(crate) fn truncate(&mut self, len: usize) {
        match self {
            Self::Heap(b) => b.truncate(len),
            Self::Fixed { start, end, .. } => {
                *end = (*start as usize + len).min(*end as usize) as u32;
                if *start == *end {
                    *start = 0;
                    *end = 0;
                }
            }
        }
    }

    /// Empties the queue, keeping its storage.
    pub(crate) fn clear(&mut self) {
        self.truncate(0);
    }

    /// Takes the first `n` bytes (at most all) as `Bytes`: without copying
    /// from the heap, copied from provided storage.
    pub(crate) fn split_to_bytes(&mut self, n: usize) -> Bytes {
        let n = n.min(self.len());
        match self {
            Self::Heap(b) => b.split_to(n).freeze(),
            Self::Fixed { .. } => {
                let out = Bytes::copy_from_slice(&self[..n]);
                self.advance(n);
                out
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::boxed::Box;
    use alloc::vec;

    fn fixed(n: usize) -> Queue {
        Queue::fixed(Box::leak(vec![0u8; n].into_boxed_slice()))
    }

    /// A provided queue reads from its front and writes at its back, and
    /// moves its bytes to the start when the back has no room.
    #[test]
    fn a_provided_queue_moves_its_bytes_to_make_room() {
        let mut q = fixed(8);
        assert!(q.extend_from_slice(b"abcdef"));
        q.advance(4);
        assert_eq!(&q[..], b"ef");
        assert!(q.extend_from_slice(b"ghijkl"));
        assert_eq!(&q[..], b"efghijkl");
        assert_eq!(q.split_to_bytes(3), Bytes::from_static(b"efg"));
        assert!(q.resize(7));
        assert_eq!(&q[..], b"hijkl\0\0");
        q.truncate(2);
        assert_eq!(&q[..], b"hi");
        q.clear();
        assert!(q.is_empty());
        assert_eq!(q.heap_capacity(), 0);
        assert_eq!(q.capacity(), 8);
    }

    /// Asked for more than it holds (a sizing bug), it writes nothing.
    #[test]
    fn a_provided_queue_never_writes_past_its_storage() {
        let mut q = fixed(4);
        assert!(q.extend_from_slice(b"abc"));
        assert!(!q.extend_from_slice(b"de"));
        assert_eq!(&q[..], b"abc");
    }

    /// A heap queue grows by doubling, but not past its limit.
    #[test]
    fn a_heap_queue_grows_within_its_limit() {
        let mut q = Queue::default();
        assert!(q.reserve_within(3000, || 5000));
        assert!(q.extend_from_slice(&[1; 3000]));
        assert!(q.reserve_within(1500, || 5000));
        assert_eq!(q.capacity(), 5000, "doubled to 6000, held to 5000");
        assert!(q.reserve_within(3000, || 5000));
        assert!(q.capacity() >= 6000, "what is needed, whatever the limit");
    }

    /// At its bound, a heap queue takes room back from the bytes already
    /// read when as many were read as are held, in the same allocation; it
    /// never grows past the bound.
    #[test]
    fn a_heap_queue_at_its_limit_reuses_what_was_read() {
        let mut q = Queue::default();
        assert!(q.reserve_within(5000, || 5000));
        assert!(q.extend_from_slice(&[1; 5000]));
        let at = q.as_ptr();
        q.advance(3000);
        assert!(q.reserve_within(2500, || 5000));
        assert!(q.extend_from_slice(&[2; 2500]));
        assert_eq!(q.as_ptr(), at, "the same allocation, the bytes moved");
        q.advance(500);
        assert!(q.reserve_within(900, || 5000));
        assert!(q.extend_from_slice(&[3; 900]));
        assert_eq!(q.len(), 4900);
        assert!(q.capacity() <= 5000, "never past the bound");
    }

    /// A provided queue is no larger than a heap one: a session's parts
    /// keep their size.
    #[test]
    fn a_queue_is_the_size_of_a_bytes_mut() {
        assert_eq!(
            core::mem::size_of::<Queue>(),
            core::mem::size_of::<BytesMut>()
        );
    }

    /// A clone holds the bytes on the heap: the storage is the original's.
    #[test]
    fn a_clone_of_a_provided_queue_is_on_the_heap() {
        let mut q = fixed(4);
        assert!(q.extend_from_slice(b"ab"));
        let c = q.clone();
        assert!(!c.is_fixed());
        assert_eq!(&c[..], b"ab");
        assert!(q.take_storage().is_some());
        assert!(!q.is_fixed());
    }
}
