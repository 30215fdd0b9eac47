//! Which connections have news: smoltcp's socket wakers (its `async`
//! feature) mark them here during `Interface::poll`, so `Endpoint::poll`
//! visits those and the ones whose timer is due, not every connection.
//!
//! One bit per connection slot in 32-bit atomic words (the widest atomics a
//! Cortex-M4 has); draining costs one load per 32 slots. Wakers are built
//! with `alloc::task::Wake`, so no `unsafe` is needed.

use alloc::sync::Arc;
use alloc::task::Wake;
use alloc::vec::Vec;
use core::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use core::task::Waker;

/// The set of slots woken since the last drain.
#[derive(Debug)]
pub(crate) struct Ready {
    words: Vec<AtomicU32>,
    any: AtomicBool,
}

impl Ready {
    /// A set for slots `0..capacity`.
    pub(crate) fn new(capacity: usize) -> Arc<Self> {
        Arc::new(Self {
            words: (0..capacity.div_ceil(32))
                .map(|_| AtomicU32::new(0))
                .collect(),
            any: AtomicBool::new(false),
        })
    }

    /// Marks `index`; out of range marks nothing (cannot happen: slots are
    /// bounded by the capacity).
    pub(crate) fn mark(&self, index: usize) {
        if let Some(w) = self.words.get(index / 32) {
            w.fetch_or(1 << (index % 32), Ordering::Relaxed);
            self.any.store(true, Ordering::Release);
        }
    }

    /// Whether anything was marked since the last drain.
    pub(crate) fn any(&self) -> bool {
        self.any.load(Ordering::Acquire)
    }

    /// Appends every marked slot to `out`, and clears them.
    pub(crate) fn drain_into(&self, out: &mut Vec<usize>) {
        if !self.any.swap(false, Ordering::AcqRel) {
            return;
        }
        for (i, w) in self.words.iter().enumerate() {
            let mut bits = w.swap(0, Ordering::Relaxed);
            while bits != 0 {
                let b = bits.trailing_zeros() as usize;
                out.push(i * 32 + b);
                bits &= bits - 1;
            }
        }
    }
}

/// The waker of one connection slot.
struct SlotWaker {
    ready: Arc<Ready>,
    index: usize,
}

impl Wake for SlotWaker {
    fn wake(self: Arc<Self>) {
        self.ready.mark(self.index);
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.ready.mark(self.index);
    }
}

/// A waker that marks `index` in `ready`.
pub(crate) fn waker(ready: &Arc<Ready>, index: usize) -> Waker {
    Waker::from(Arc::new(SlotWaker {
        ready: ready.clone(),
        index,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn marks_drain_once() {
        let r = Ready::new(100);
        let w = waker(&r, 70);
        assert!(!r.any());
        w.wake_by_ref();
        r.mark(3);
        let mut out = Vec::new();
        r.drain_into(&mut out);
        assert_eq!(out, [3, 70]);
        out.clear();
        r.drain_into(&mut out);
        assert!(out.is_empty());
    }
}
