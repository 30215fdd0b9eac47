//! The session's timers: one deadline per [`TimerId`], after quinn-proto's
//! `TimerTable`. Rows arm and clear them; the data path only moves the two
//! rolling ones (idle on receipt, keepalive on sending) while they run.

use crate::state::TimerId;
use crate::time::Instant;

/// One optional deadline per timer.
#[derive(Debug, Clone, Default)]
pub(crate) struct TimerTable {
    deadlines: [Option<Instant>; TimerId::ALL.len()],
    /// The idle timer is held while the session itself pushes back on the
    /// transport (the peer cannot be blamed for bytes we do not take).
    idle_suspended: bool,
    /// The transport holds bytes the peer has not acknowledged: the timers
    /// that wait for the peer ([`TimerId::waits_for_peer`]) are held, since
    /// TCP's user timeout bounds that wait and a session timer must not
    /// kill a transport that can still deliver (issue 11, item 1).
    transport_pending: bool,
}

impl TimerTable {
    pub(crate) fn set(&mut self, t: TimerId, at: Instant) {
        self.deadlines[t as usize] = Some(at);
    }

    pub(crate) fn clear(&mut self, t: TimerId) {
        self.deadlines[t as usize] = None;
    }

    #[cfg(test)]
    fn get(&self, t: TimerId) -> Option<Instant> {
        self.deadlines[t as usize]
    }

    /// Moves a running timer to `at`; a stopped one stays stopped.
    pub(crate) fn restart_if_armed(&mut self, t: TimerId, at: Instant) {
        if let Some(d) = &mut self.deadlines[t as usize] {
            *d = at;
        }
    }

    /// Suspends or resumes the idle timer; resuming restarts it at `restart`.
    pub(crate) fn suspend_idle(&mut self, suspended: bool, restart: Instant) {
        if self.idle_suspended && !suspended {
            self.restart_if_armed(TimerId::Idle, restart);
        }
        self.idle_suspended = suspended;
    }

    /// Holds or releases the timers that wait for the peer; releasing
    /// restarts each one that is armed at `restart(timer)`, so the peer gets
    /// its whole time from the moment everything we sent was acknowledged.
    pub(crate) fn transport_pending(
        &mut self,
        pending: bool,
        restart: impl Fn(TimerId) -> Instant,
    ) {
        if self.transport_pending && !pending {
            for t in TimerId::ALL {
                if t.waits_for_peer() {
                    self.restart_if_armed(t, restart(t));
                }
            }
        }
        self.transport_pending = pending;
    }

    fn effective(&self, t: TimerId) -> Option<Instant> {
        if (t == TimerId::Idle && self.idle_suspended)
            || (self.transport_pending && t.waits_for_peer())
        {
            return None;
        }
        self.deadlines[t as usize]
    }

    /// The earliest deadline.
    pub(crate) fn next(&self) -> Option<Instant> {
        TimerId::ALL.iter().filter_map(|&t| self.effective(t)).min()
    }

    /// The earliest timer due at `now`, taken off the table.
    pub(crate) fn take_expired(&mut self, now: Instant) -> Option<TimerId> {
        let t = TimerId::ALL
            .iter()
            .copied()
            .filter(|&t| self.effective(t).is_some_and(|d| d <= now))
            .min_by_key(|&t| self.deadlines[t as usize])?;
        self.clear(t);
        Some(t)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn earliest_first_and_suspension() {
        let mut t = TimerTable::default();
        t.set(TimerId::Linger, Instant::from_millis(20));
        t.set(TimerId::Idle, Instant::from_millis(10));
        assert_eq!(t.next(), Some(Instant::from_millis(10)));
        t.suspend_idle(true, Instant::ZERO);
        assert_eq!(t.next(), Some(Instant::from_millis(20)));
        assert_eq!(t.take_expired(Instant::from_millis(15)), None);
        t.suspend_idle(false, Instant::from_millis(30));
        assert_eq!(t.get(TimerId::Idle), Some(Instant::from_millis(30)));
        assert_eq!(
            t.take_expired(Instant::from_millis(40)),
            Some(TimerId::Linger)
        );
        assert_eq!(
            t.take_expired(Instant::from_millis(40)),
            Some(TimerId::Idle)
        );
        assert_eq!(t.take_expired(Instant::from_millis(40)), None);
    }

    #[test]
    fn peer_timers_wait_while_pending_and_restart_whole() {
        let mut t = TimerTable::default();
        t.transport_pending(true, |_| Instant::ZERO);
        t.set(TimerId::Linger, Instant::from_millis(10));
        t.set(TimerId::AbortFlush, Instant::from_millis(70));
        assert_eq!(t.next(), Some(Instant::from_millis(70)));
        assert_eq!(t.take_expired(Instant::from_millis(50)), None);
        t.transport_pending(false, |_| Instant::from_millis(60));
        assert_eq!(t.next(), Some(Instant::from_millis(60)));
        // Releasing released timers does not move them.
        t.transport_pending(false, |_| Instant::from_millis(90));
        assert_eq!(t.next(), Some(Instant::from_millis(60)));
    }
}
