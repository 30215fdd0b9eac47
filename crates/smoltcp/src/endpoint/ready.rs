//! Which connections have news: smoltcp's socket wakers (its `async`
//! feature) mark them here during `Interface::poll`, so `Endpoint::poll`
//! visits those and the ones whose timer is due, not every connection.
//!
//! A waker serves a group of [`SLOTS_PER_WAKER`] consecutive slots, and its
//! wake-up marks the group: the endpoint then visits the group's
//! connections, and those without news cost the idle check only (and no
//! rescheduling). Without `unsafe`, a waker with an identity of its own is
//! an `Arc` allocation (built with `alloc::task::Wake`), 32 bytes plus the
//! 16-byte `Waker` kept to register it: one per slot is 48 bytes of every
//! idle session, one per group of 32 about 1.5. What the neighbours cost a
//! busy connection is measured in `benches/README.md` (`profile_bulk 64 1
//! 31`).
//!
//! One bit per group in 32-bit atomic words (the widest atomics a Cortex-M4
//! has), and a summary bit per word, so draining costs one load per 1 024
//! groups plus one per word that has news.
//!
//! Only smoltcp's wakers mark a [`Ready`], and only plain atomic loads and
//! stores are used, never a read-modify-write: a smoltcp socket wakes only
//! inside a call that holds it mutably (through `&mut SocketSet`, and all of
//! an endpoint's sockets are in one set), and [`Ready::drain_into`] runs
//! inside `Endpoint::poll`, which holds the same set mutably, so no two
//! marks and no mark and drain ever overlap. The endpoint's own requests
//! for a visit (a new connection, a read that made room) go to [`Poked`]
//! instead: the application may call those while another thread polls the
//! interface. A read-modify-write is a locked instruction on x86 (about 20
//! cycles, two or three per wake-up) and an exclusive-access loop on a
//! Cortex-M.

use alloc::sync::Arc;
use alloc::task::Wake;
use alloc::vec::Vec;
use core::sync::atomic::{AtomicBool, AtomicU32, AtomicUsize, Ordering};
use core::task::Waker;

/// How many consecutive connection slots share one waker (see the module
/// docs): a wake-up costs the group's other connections an idle check each
/// (about a hundred instructions), and each slot costs 50 /
/// `SLOTS_PER_WAKER` bytes of waker.
pub(crate) const SLOTS_PER_WAKER: usize = 32;

/// The set of waker groups woken since the last drain (group `g` holds
/// slots `g * SLOTS_PER_WAKER ..`).
#[derive(Debug)]
pub(crate) struct Ready {
    words: Vec<AtomicU32>,
    /// Bit `j % 32` of `summary[j / 32]`: `words[j]` may be non-zero.
    summary: Vec<AtomicU32>,
    /// One past the highest summary word marked: a drain looks no further
    /// (slot tables grow from 0, and freed slots are reused before new ones).
    end: AtomicUsize,
    any: AtomicBool,
}

impl Ready {
    /// A set for groups `0..capacity`.
    pub(crate) fn new(capacity: usize) -> Arc<Self> {
        let words = capacity.div_ceil(32);
        Arc::new(Self {
            words: (0..words).map(|_| AtomicU32::new(0)).collect(),
            summary: (0..words.div_ceil(32)).map(|_| AtomicU32::new(0)).collect(),
            end: AtomicUsize::new(0),
            any: AtomicBool::new(false),
        })
    }

    /// Marks group `index`; out of range marks nothing (cannot happen: slots
    /// are bounded by `Config::max_connections`, and the endpoint sizes the
    /// set for its groups).
    pub(crate) fn mark(&self, index: usize) {
        let word = index / 32;
        if let (Some(w), Some(s)) = (self.words.get(word), self.summary.get(word / 32)) {
            // See the module docs: marks and drains never overlap, so a load
            // and a store are an `or`.
            // The summary, `end` and `any` are written even when the word
            // had bits already: cheap, and what a mark would repair if the
            // reasoning above were ever broken.
            let old = w.load(Ordering::Relaxed);
            w.store(old | 1 << (index % 32), Ordering::Relaxed);
            let summary = s.load(Ordering::Relaxed);
            s.store(summary | 1 << (word % 32), Ordering::Relaxed);
            if self.end.load(Ordering::Relaxed) <= word / 32 {
                self.end.store(word / 32 + 1, Ordering::Relaxed);
            }
            self.any.store(true, Ordering::Release);
        }
    }

    /// Whether anything was marked since the last drain.
    pub(crate) fn any(&self) -> bool {
        self.any.load(Ordering::Acquire)
    }

    /// Appends every marked group to `out`, and clears them.
    pub(crate) fn drain_into(&self, out: &mut Vec<usize>) {
        if !self.any.load(Ordering::Acquire) {
            return;
        }
        self.any.store(false, Ordering::Relaxed);
        let end = self.end.load(Ordering::Relaxed).min(self.summary.len());
        self.end.store(0, Ordering::Relaxed);
        for (si, s) in self.summary[..end].iter().enumerate() {
            let mut words = s.load(Ordering::Relaxed);
            if words == 0 {
                continue;
            }
            s.store(0, Ordering::Relaxed);
            while words != 0 {
                let i = si * 32 + words.trailing_zeros() as usize;
                words &= words - 1;
                let mut bits = self.words[i].load(Ordering::Relaxed);
                self.words[i].store(0, Ordering::Relaxed);
                while bits != 0 {
                    let b = bits.trailing_zeros() as usize;
                    out.push(i * 32 + b);
                    bits &= bits - 1;
                }
            }
        }
    }
}

/// Slots the endpoint itself wants visited at the next poll (a new
/// connection, a read that made room), kept apart from [`Ready`] (see the
/// module docs). One bit per slot says whether it is listed, so the list
/// never holds a slot twice: bounded by the slots, however often the
/// application reads between two polls.
#[derive(Debug, Default)]
pub(crate) struct Poked {
    bits: Vec<u64>,
    list: Vec<usize>,
}

impl Poked {
    /// Asks for a visit of `index` at the next drain.
    pub(crate) fn poke(&mut self, index: usize) {
        let (word, bit) = (index / 64, 1u64 << (index % 64));
        if self.bits.len() <= word {
            self.bits.resize(word + 1, 0);
        }
        if self.bits[word] & bit == 0 {
            self.bits[word] |= bit;
            self.list.push(index);
        }
    }

    /// Whether a visit was asked for since the last drain.
    pub(crate) fn any(&self) -> bool {
        !self.list.is_empty()
    }

    /// Appends the slots asked for to `out`, and forgets them.
    pub(crate) fn drain_into(&mut self, out: &mut Vec<usize>) {
        for index in self.list.drain(..) {
            if let Some(w) = self.bits.get_mut(index / 64) {
                *w &= !(1u64 << (index % 64));
            }
            out.push(index);
        }
    }
}

/// The waker of one group of [`SLOTS_PER_WAKER`] connection slots.
pub(crate) struct GroupWaker {
    ready: Arc<Ready>,
    group: usize,
}

impl Wake for GroupWaker {
    fn wake(self: Arc<Self>) {
        self.ready.mark(self.group);
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.ready.mark(self.group);
    }
}

/// The waker of group `group` (one allocation, made once per group).
pub(crate) fn group_waker(ready: &Arc<Ready>, group: usize) -> Waker {
    Waker::from(Arc::new(GroupWaker {
        ready: ready.clone(),
        group,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn marks_drain_once() {
        let r = Ready::new(5000);
        let w = group_waker(&r, 70);
        let far = group_waker(&r, 4321);
        assert!(!r.any());
        far.wake();
        w.wake_by_ref();
        r.mark(3);
        let mut out = Vec::new();
        r.drain_into(&mut out);
        assert_eq!(out, [3, 70, 4321]);
        out.clear();
        r.drain_into(&mut out);
        assert!(out.is_empty());
    }

    /// Groups that share a word (and a summary word) each come out once,
    /// however often marked, and the set is empty again after a drain.
    #[test]
    fn marks_in_one_word_all_drain() {
        let r = Ready::new(2048);
        for i in [5, 6, 5, 31, 32, 1500, 6] {
            r.mark(i);
        }
        let mut out = Vec::new();
        r.drain_into(&mut out);
        assert_eq!(out, [5, 6, 31, 32, 1500]);
        assert!(!r.any());
        r.mark(6);
        out.clear();
        r.drain_into(&mut out);
        assert_eq!(out, [6]);
    }

    /// A slot poked many times is listed once; a drain forgets it.
    #[test]
    fn pokes_are_listed_once() {
        let mut p = Poked::default();
        for _ in 0..1000 {
            p.poke(70);
        }
        p.poke(3);
        assert!(p.any());
        let mut out = Vec::new();
        p.drain_into(&mut out);
        assert_eq!(out, [70, 3]);
        assert!(!p.any());
        p.poke(70);
        out.clear();
        p.drain_into(&mut out);
        assert_eq!(out, [70]);
    }
}
