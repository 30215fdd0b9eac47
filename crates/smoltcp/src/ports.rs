//! Ephemeral port allocation. smoltcp's `connect` needs a non-zero local port
//! chosen by the application, and has no notion of TIME-WAIT reuse; sockets are
//! also removed from the set before TIME-WAIT ends. So the allocator refuses
//! any port that is live, or that closed less than `time_wait` ago.

use alloc::collections::{BTreeMap, BTreeSet, VecDeque};
use core::ops::RangeInclusive;
use core::time::Duration;

use bookend_session::Instant;

/// Why no port could be had.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct PortsExhausted;

#[derive(Debug)]
pub(crate) struct Ports {
    range: RangeInclusive<u16>,
    next: u16,
    live: BTreeSet<u16>,
    /// Port -> end of its quarantine.
    quarantine: BTreeMap<u16, Instant>,
    /// The same deadlines in time order (each is `release time + time_wait`,
    /// so they arrive sorted): expiring is O(expired), not a scan per connect.
    expiry: VecDeque<(Instant, u16)>,
    time_wait: Duration,
}

impl Ports {
    pub(crate) fn new(range: RangeInclusive<u16>, seed: u64, time_wait: Duration) -> Self {
        let span = u64::from(*range.end() - *range.start()) + 1;
        // A seeded start, so two boots do not walk the same ports in the same order.
        let next = *range.start() + (seed % span) as u16;
        Self {
            range,
            next,
            live: BTreeSet::new(),
            quarantine: BTreeMap::new(),
            expiry: VecDeque::new(),
            time_wait,
        }
    }

    /// A port not live and not in quarantine at `now`, walking the range once.
    pub(crate) fn allocate(&mut self, now: Instant) -> Result<u16, PortsExhausted> {
        while let Some(&(until, port)) = self.expiry.front() {
            if until > now {
                break;
            }
            self.expiry.pop_front();
            // A port quarantined again later has a newer deadline: keep that one.
            if self.quarantine.get(&port) == Some(&until) {
                self.quarantine.remove(&port);
            }
        }
        let (lo, hi) = (*self.range.start(), *self.range.end());
        let mut port = self.next;
        for _ in lo..=hi {
            let candidate = port;
            port = if port == hi { lo } else { port + 1 };
            if !self.live.contains(&candidate) && !self.quarantine.contains_key(&candidate) {
                self.live.insert(candidate);
                self.next = port;
                return Ok(candidate);
            }
        }
        Err(PortsExhausted)
    }

    /// The connection on `port` ended at `now`: quarantine it for TIME-WAIT.
    pub(crate) fn release(&mut self, port: u16, now: Instant) {
        if self.live.remove(&port) {
            let until = now + self.time_wait;
            self.quarantine.insert(port, until);
            self.expiry.push_back((until, port));
        }
    }

    /// `port` was allocated but never used on the wire (the connect failed
    /// before a SYN): free at once, no quarantine, no table entry.
    pub(crate) fn cancel(&mut self, port: u16) {
        self.live.remove(&port);
    }

    #[cfg(test)]
    pub(crate) fn live(&self) -> usize {
        self.live.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn never_reuses_live_or_quarantined_ports() {
        let mut p = Ports::new(50000..=50003, 0, Duration::from_secs(10));
        let t0 = Instant::ZERO;
        let a: alloc::vec::Vec<u16> = (0..4).map(|_| p.allocate(t0).unwrap()).collect();
        assert_eq!(p.allocate(t0), Err(PortsExhausted));
        p.release(a[0], t0);
        assert_eq!(
            p.allocate(Instant::from_millis(9_999)),
            Err(PortsExhausted),
            "TIME-WAIT"
        );
        assert_eq!(p.allocate(Instant::from_millis(10_000)), Ok(a[0]));
        assert_eq!(p.live(), 4);
    }

    #[test]
    fn a_cancelled_port_is_free_at_once() {
        let mut p = Ports::new(50000..=50000, 0, Duration::from_secs(10));
        let port = p.allocate(Instant::ZERO).unwrap();
        p.cancel(port);
        assert_eq!(p.allocate(Instant::ZERO), Ok(port));
        assert!(p.quarantine.is_empty() && p.expiry.is_empty());
    }
}
