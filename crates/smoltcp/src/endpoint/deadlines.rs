//! Every slot's next deadline, earliest first: an indexed binary min-heap.
//!
//! Each slot has at most one entry, found through `pos`, so moving a
//! deadline moves the entry (O(log n)) instead of leaving a stale one
//! behind. A `BinaryHeap` with lazy deletion holds stale entries (two per
//! idle session) and must be rebuilt by a scan when it grows mostly stale;
//! this one holds exactly the scheduled slots, 12 B each plus 4 B of
//! position per slot (idle memory, and no O(n) work in a poll).

use alloc::vec::Vec;

use bookend_session::Instant;

/// No entry (in `pos`).
const NONE: u32 = u32::MAX;

/// One heap entry: a deadline in microseconds split into two words, and
/// its slot, 12 bytes where `(Instant, u32)` is 16 (its alignment is 8).
/// Field order makes the derived order the deadline's, then the slot's.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct Entry {
    hi: u32,
    lo: u32,
    slot: u32,
}

impl Entry {
    fn new(at: Instant, slot: u32) -> Self {
        let us = at.total_micros();
        Self {
            hi: (us >> 32) as u32,
            lo: us as u32,
            slot,
        }
    }

    fn at(self) -> Instant {
        Instant::from_micros((u64::from(self.hi) << 32) | u64::from(self.lo))
    }
}

/// The deadlines of slots `0..` (see the module docs).
#[derive(Debug, Default)]
pub(super) struct Deadlines {
    /// (deadline, slot), a binary min-heap on the deadline (ties by slot,
    /// so the order is deterministic).
    heap: Vec<Entry>,
    /// Slot -> its entry's index in `heap`, or [`NONE`].
    pos: Vec<u32>,
}

impl Deadlines {
    /// Slot `slot`'s deadline, if it has one.
    pub(super) fn get(&self, slot: usize) -> Option<Instant> {
        let p = *self.pos.get(slot)?;
        (p != NONE).then(|| self.heap[p as usize].at())
    }

    /// The earliest deadline and its slot.
    pub(super) fn peek(&self) -> Option<(Instant, usize)> {
        self.heap.first().map(|e| (e.at(), e.slot as usize))
    }

    /// Entries held (one per slot with a deadline).
    #[cfg(test)]
    pub(super) fn len(&self) -> usize {
        self.heap.len()
    }

    /// Sets (or, with `None`, clears) slot `slot`'s deadline. `slot` must fit
    /// a `u32` below `u32::MAX` (slots are numbered by `Handle`'s `u32`).
    pub(super) fn set(&mut self, slot: usize, at: Option<Instant>) {
        if self.pos.len() <= slot {
            // Grown like the slot tables (by an eighth, at least 16).
            let want = slot + 1;
            if self.pos.capacity() < want {
                self.pos
                    .reserve_exact((want - self.pos.len()).max(super::growth(self.pos.len())));
            }
            self.pos.resize(want, NONE);
        }
        let p = self.pos[slot];
        match (p, at) {
            (NONE, None) => {}
            (NONE, Some(at)) => {
                if self.heap.len() == self.heap.capacity() {
                    self.heap.reserve_exact(super::growth(self.heap.len()));
                }
                let i = self.heap.len();
                self.heap.push(Entry::new(at, slot as u32));
                self.pos[slot] = i as u32;
                self.sift_up(i);
            }
            (p, None) => self.remove_at(p as usize),
            (p, Some(at)) => {
                let i = p as usize;
                let old = core::mem::replace(&mut self.heap[i], Entry::new(at, slot as u32));
                if at < old.at() {
                    self.sift_up(i);
                } else {
                    self.sift_down(i);
                }
            }
        }
    }

    /// Removes and returns the earliest entry's slot if it is due by `now`.
    pub(super) fn pop_due(&mut self, now: Instant) -> Option<usize> {
        let first = *self.heap.first()?;
        if first.at() > now {
            return None;
        }
        self.remove_at(0);
        Some(first.slot as usize)
    }

    fn remove_at(&mut self, i: usize) {
        let last = self.heap.len() - 1;
        self.swap(i, last);
        let gone = self.heap.pop().expect("entry i exists");
        self.pos[gone.slot as usize] = NONE;
        if i < self.heap.len() {
            // The entry moved into `i` may belong above or below it.
            self.sift_up(i);
            self.sift_down(i);
        }
    }

    fn less(&self, a: usize, b: usize) -> bool {
        self.heap[a] < self.heap[b]
    }

    fn swap(&mut self, a: usize, b: usize) {
        self.heap.swap(a, b);
        self.pos[self.heap[a].slot as usize] = a as u32;
        self.pos[self.heap[b].slot as usize] = b as u32;
    }

    fn sift_up(&mut self, mut i: usize) {
        while i > 0 {
            let parent = (i - 1) / 2;
            if !self.less(i, parent) {
                break;
            }
            self.swap(i, parent);
            i = parent;
        }
    }

    fn sift_down(&mut self, mut i: usize) {
        loop {
            let (l, r) = (2 * i + 1, 2 * i + 2);
            let mut min = i;
            if l < self.heap.len() && self.less(l, min) {
                min = l;
            }
            if r < self.heap.len() && self.less(r, min) {
                min = r;
            }
            if min == i {
                break;
            }
            self.swap(i, min);
            i = min;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::collections::BTreeMap;
    use proptest::prelude::*;

    fn at(ms: u64) -> Instant {
        Instant::from_millis(ms)
    }

    /// An entry keeps its deadline exactly, across the split words and at
    /// the ends of time, and orders by it.
    #[test]
    fn entries_round_trip_and_order_by_deadline() {
        for us in [
            0,
            1,
            u64::from(u32::MAX),
            u64::from(u32::MAX) + 1,
            u64::MAX - 1,
        ] {
            let t = Instant::from_micros(us);
            assert_eq!(Entry::new(t, 7).at(), t);
        }
        let late = Entry::new(Instant::from_micros(u64::from(u32::MAX) + 1), 0);
        let early = Entry::new(Instant::from_micros(u64::from(u32::MAX)), 9);
        assert!(early < late);
        assert_eq!(core::mem::size_of::<Entry>(), 12);
    }

    #[test]
    fn moves_and_clears_without_stale_entries() {
        let mut d = Deadlines::default();
        d.set(3, Some(at(30)));
        d.set(1, Some(at(10)));
        d.set(1, Some(at(40)));
        d.set(2, Some(at(20)));
        assert_eq!(d.len(), 3);
        assert_eq!(d.peek(), Some((at(20), 2)));
        d.set(2, None);
        assert_eq!(d.get(2), None);
        assert_eq!(d.pop_due(at(29)), None);
        assert_eq!(d.pop_due(at(100)), Some(3));
        assert_eq!(d.pop_due(at(100)), Some(1));
        assert_eq!(d.pop_due(at(100)), None);
        assert_eq!(d.len(), 0);
    }

    proptest! {
        /// Against a model (a map of slot -> deadline): every operation
        /// leaves the same deadlines, the earliest on top, one entry each.
        #[test]
        fn agrees_with_a_map(ops in proptest::collection::vec((0usize..40, proptest::option::of(0u64..50), any::<bool>()), 0..300)) {
            let mut d = Deadlines::default();
            let mut model = BTreeMap::new();
            for (slot, deadline, pop) in ops {
                if pop {
                    let now = at(deadline.unwrap_or(25));
                    let due = model.iter().map(|(&s, &t)| (t, s)).min().filter(|&(t, _)| t <= now);
                    let got = d.pop_due(now);
                    prop_assert_eq!(got, due.map(|(_, s)| s));
                    if let Some(s) = got {
                        model.remove(&s);
                    }
                } else {
                    d.set(slot, deadline.map(at));
                    match deadline {
                        Some(t) => { model.insert(slot, at(t)); }
                        None => { model.remove(&slot); }
                    }
                }
                prop_assert_eq!(d.len(), model.len());
                prop_assert_eq!(d.peek(), model.iter().map(|(&s, &t)| (t, s)).min());
                for s in 0..40 {
                    prop_assert_eq!(d.get(s), model.get(&s).copied());
                }
            }
        }
    }
}
