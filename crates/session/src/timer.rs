//! The session's timers: one deadline per [`TimerId`], after quinn-proto's
//! `TimerTable`. Rows arm and clear them; the data path only moves the two
//! rolling ones (idle on receipt, keepalive on sending) while they run.
//!
//! The timers that wait for the peer (connect, linger, idle:
//! [`TimerId::waits_for_peer`]) can be *paused* while the transport still
//! holds bytes (or our FIN) the peer has not acknowledged: their clocks stop,
//! and resume with the time they had left. So they count only time in which
//! the peer had everything we sent (issue 11: a session timer never kills a
//! transport that is still delivering).
//!
//! Three slots hold the seven timers ([`TimerId::slot`]): the phase timers
//! (connect, handshake, decision, linger, abort-flush) are never armed
//! together, so they share one slot tagged with its owner; idle and
//! keepalive have one each. The transition table guarantees it, and
//! `state::tests::timers_sharing_a_slot_are_never_armed_together` checks it
//! over every row: 24 bytes per session instead of 56 (issue 10: idle
//! memory).

use core::time::Duration;

use crate::state::TimerId;
use crate::time::Instant;

/// One timer's setting.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
enum Slot {
    #[default]
    Off,
    /// Running: fires at this instant.
    At(Instant),
    /// Paused with this much time left.
    Paused(Duration),
}

/// A slot's setting and owner packed into one word, so that the table of an
/// idle session costs 8 bytes per slot (issue 10: idle memory). Bit 63
/// marks a timer that does not run (paused, or off); bits 59-61 name the
/// timer that owns the slot (its [`TimerId`]); bits 0-58 are its deadline,
/// or its time left, in microseconds, all ones for off. Bit 62 is not the
/// slot's: the table keeps its two flags there (in the first two slots), so
/// that the table is three words. Deadlines and time left are clamped below
/// 2^59 µs (18 000 years after the driver's epoch), which the table treats
/// as the end of time; `Instant` itself goes on to `u64::MAX - 1` µs. A
/// driver whose clock passed 2^59 µs would see every armed timer due at
/// once (`handle_timeout` bounds the loop).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Packed(u64);

impl Packed {
    const PAUSED: u64 = 1 << 63;
    /// The table's flag bit (see the type docs): never part of a slot.
    const FLAG: u64 = 1 << 62;
    const OWNER_SHIFT: u32 = 59;
    const OWNER: u64 = 0b111 << Self::OWNER_SHIFT;
    const VALUE: u64 = (1 << Self::OWNER_SHIFT) - 1;
    const OFF: Self = Self(Self::PAUSED | Self::VALUE);
    const MAX: u64 = Self::VALUE - 1;

    /// The slot, whatever the table's flag bit and the owner hold.
    fn get(self) -> Slot {
        let w = self.0 & !(Self::FLAG | Self::OWNER);
        if w == Self::OFF.0 {
            Slot::Off
        } else if w & Self::PAUSED != 0 {
            Slot::Paused(Duration::from_micros(w & Self::VALUE))
        } else {
            Slot::At(Instant::from_micros(w))
        }
    }

    /// The word of `slot` owned by `owner`, its flag bit clear.
    fn new(owner: TimerId, slot: Slot) -> Self {
        let tag = (owner as u64) << Self::OWNER_SHIFT;
        let value = match slot {
            Slot::Off => Self::OFF.0,
            Slot::At(at) => at.total_micros().min(Self::MAX),
            Slot::Paused(left) => {
                let us = u64::try_from(left.as_micros()).unwrap_or(u64::MAX);
                Self::PAUSED | us.min(Self::MAX)
            }
        };
        Self(tag | value)
    }

    fn owner(self) -> TimerId {
        TimerId::ALL[((self.0 & Self::OWNER) >> Self::OWNER_SHIFT) as usize % TimerId::ALL.len()]
    }

    fn is_off(self) -> bool {
        self.0 & !(Self::FLAG | Self::OWNER) == Self::OFF.0
    }
}

/// Which slot's flag bit holds which flag of the table.
const PAUSED_FLAG_SLOT: usize = 0;
const IDLE_SUSPENDED_FLAG_SLOT: usize = 1;

/// Slots in the table (see the module docs).
const SLOTS: usize = 3;

/// One optional deadline per timer in three shared slots (see the module
/// docs), and two flags in the slots' spare bits: the idle timer is held
/// while the session itself pushes back on the transport (the peer cannot
/// be blamed for bytes we do not take); the peer timers are paused while the
/// transport holds unacknowledged bytes.
#[derive(Clone)]
pub(crate) struct TimerTable {
    slots: [Packed; SLOTS],
}

impl Default for TimerTable {
    fn default() -> Self {
        // Each slot off, owned by a timer that lives there.
        Self {
            slots: [
                Packed::new(TimerId::Connect, Slot::Off),
                Packed::new(TimerId::Idle, Slot::Off),
                Packed::new(TimerId::Keepalive, Slot::Off),
            ],
        }
    }
}

impl core::fmt::Debug for TimerTable {
    /// The timers armed, by name, and the flags (not the raw words).
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        let mut d = f.debug_struct("TimerTable");
        for w in self.slots {
            if !w.is_off() {
                d.field(w.owner().name(), &w.get());
            }
        }
        d.field("paused", &self.paused())
            .field("idle_suspended", &self.idle_suspended())
            .finish()
    }
}

impl TimerTable {
    fn flag(&self, slot: usize) -> bool {
        self.slots[slot].0 & Packed::FLAG != 0
    }

    fn set_flag(&mut self, slot: usize, on: bool) {
        let w = &mut self.slots[slot].0;
        *w = if on {
            *w | Packed::FLAG
        } else {
            *w & !Packed::FLAG
        };
    }

    fn paused(&self) -> bool {
        self.flag(PAUSED_FLAG_SLOT)
    }

    fn idle_suspended(&self) -> bool {
        self.flag(IDLE_SUSPENDED_FLAG_SLOT)
    }

    /// `t`'s setting: off unless `t` owns its slot.
    fn slot(&self, t: TimerId) -> Slot {
        let w = self.slots[t.slot()];
        if w.owner() == t { w.get() } else { Slot::Off }
    }

    /// Writes `t`'s slot (taking it over), keeping the table's flag bit in it.
    fn put(&mut self, t: TimerId, slot: Slot) {
        let w = &mut self.slots[t.slot()].0;
        *w = Packed::new(t, slot).0 | (*w & Packed::FLAG);
    }

    fn pauses(&self, t: TimerId) -> bool {
        self.paused() && t.waits_for_peer()
    }

    /// Arms `t` to fire `after` from `now` (paused, if the peer timers are).
    pub(crate) fn set(&mut self, t: TimerId, now: Instant, after: Duration) {
        let w = self.slots[t.slot()];
        // Never two timers of one slot armed (the module docs): a row that
        // broke this would cut the other timer short.
        debug_assert!(
            w.is_off() || w.owner() == t,
            "{} armed while {} holds its slot",
            t.name(),
            w.owner().name()
        );
        let slot = if self.pauses(t) {
            Slot::Paused(after)
        } else {
            Slot::At(now + after)
        };
        self.put(t, slot);
    }

    /// Stops `t` (a timer that is not armed stays so; its slot's other
    /// owners are left alone).
    pub(crate) fn clear(&mut self, t: TimerId) {
        if self.slots[t.slot()].owner() == t {
            self.put(t, Slot::Off);
        }
    }

    #[cfg(test)]
    fn get(&self, t: TimerId) -> Option<Instant> {
        match self.slot(t) {
            Slot::At(at) => Some(at),
            _ => None,
        }
    }

    /// Whether the peer timers are paused.
    pub(crate) fn is_paused(&self) -> bool {
        self.paused()
    }

    /// Moves a running (or paused) timer to `after` from `now`; a stopped
    /// one stays stopped.
    pub(crate) fn restart_if_armed(&mut self, t: TimerId, now: Instant, after: Duration) {
        if self.slot(t) != Slot::Off {
            self.set(t, now, after);
        }
    }

    /// Suspends or resumes the idle timer; resuming restarts it at
    /// `after` from `now`.
    pub(crate) fn suspend_idle(&mut self, suspended: bool, now: Instant, after: Duration) {
        if self.idle_suspended() && !suspended {
            self.restart_if_armed(TimerId::Idle, now, after);
        }
        self.set_flag(IDLE_SUSPENDED_FLAG_SLOT, suspended);
    }

    /// Pauses or resumes the timers that wait for the peer. Paused, they
    /// keep the time they had left; resumed, they run on from `now`.
    pub(crate) fn pause_peer_timers(&mut self, paused: bool, now: Instant) {
        if paused == self.paused() {
            return;
        }
        for i in 0..SLOTS {
            let t = self.slots[i].owner();
            if !t.waits_for_peer() {
                continue;
            }
            let slot = match self.slots[i].get() {
                // A timer already due is not paused: it fires (the driver
                // may notice the unacknowledged bytes only after its deadline).
                Slot::At(at) if paused && at > now => {
                    Slot::Paused(at.saturating_duration_since(now))
                }
                Slot::Paused(left) if !paused => Slot::At(now + left),
                s => s,
            };
            self.put(t, slot);
        }
        self.set_flag(PAUSED_FLAG_SLOT, paused);
    }

    fn effective(&self, t: TimerId) -> Option<Instant> {
        if t == TimerId::Idle && self.idle_suspended() {
            return None;
        }
        match self.slot(t) {
            Slot::At(at) => Some(at),
            _ => None,
        }
    }

    /// The earliest deadline. On the hot path (every visit of a driver asks),
    /// so it reads the packed words directly: a running timer's word, its
    /// flag and owner bits masked off, is its deadline, and off and paused
    /// words have the top bit set.
    pub(crate) fn next(&self) -> Option<Instant> {
        // Branch-free (a driver asks several times per visit): a word that
        // is off or paused (top bit set), or the suspended idle timer's,
        // counts as `u64::MAX`.
        let idle_suspended = self.idle_suspended();
        let mut best = u64::MAX;
        for (i, w) in self.slots.iter().enumerate() {
            let w = w.0 & !(Packed::FLAG | Packed::OWNER);
            let skip = (w & Packed::PAUSED != 0) | ((i == TimerId::Idle.slot()) & idle_suspended);
            best = best.min(w | 0u64.wrapping_sub(u64::from(skip)));
        }
        (best != u64::MAX).then(|| Instant::from_micros(best))
    }

    /// The earliest timer due at `now`, taken off the table.
    pub(crate) fn take_expired(&mut self, now: Instant) -> Option<TimerId> {
        let t = self
            .slots
            .iter()
            .map(|w| w.owner())
            .filter_map(|t| self.effective(t).filter(|&d| d <= now).map(|d| (d, t)))
            .min()
            .map(|(_, t)| t)?;
        self.clear(t);
        Some(t)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: fn(u64) -> Duration = Duration::from_millis;

    /// `next` reads the packed words; it must agree with the per-timer view.
    #[test]
    fn next_agrees_with_the_timers_one_by_one() {
        let mut t = TimerTable::default();
        let mut rng = 0x2545_F491_4F6C_DD1Du64;
        for step in 0..5000u64 {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            let id = TimerId::ALL[(rng % TimerId::ALL.len() as u64) as usize];
            let now = Instant::from_micros(step * 100);
            // As the table does: a timer is armed only while no other
            // timer holds its slot.
            let w = t.slots[id.slot()];
            let free = w.is_off() || w.owner() == id;
            match (rng >> 8) % 6 {
                0 | 1 if free => t.set(id, now, Duration::from_micros(rng >> 40)),
                0 | 1 => t.clear(w.owner()),
                2 => t.clear(id),
                3 => t.pause_peer_timers((rng >> 12) & 1 == 0, now),
                4 => t.suspend_idle((rng >> 13) & 1 == 0, now, MS(5)),
                _ => {
                    let _ = t.take_expired(now);
                }
            }
            let slow = TimerId::ALL.iter().filter_map(|&i| t.effective(i)).min();
            assert_eq!(t.next(), slow, "step {step}");
        }
    }

    #[test]
    fn a_packed_slot_round_trips() {
        for owner in TimerId::ALL {
            for slot in [
                Slot::Off,
                Slot::At(Instant::ZERO),
                Slot::At(Instant::from_micros(123_456_789)),
                Slot::Paused(Duration::ZERO),
                Slot::Paused(Duration::from_micros(987_654)),
            ] {
                let p = Packed::new(owner, slot);
                assert_eq!((p.get(), p.owner()), (slot, owner));
                // The table's flag bit is not the slot's.
                let flagged = Packed(p.0 | Packed::FLAG);
                assert_eq!((flagged.get(), flagged.owner()), (slot, owner));
            }
        }
        // Both flags set, beside slots that are off and paused for as long
        // as can be: each slot and each flag reads back as written.
        let mut t = TimerTable::default();
        t.pause_peer_timers(true, Instant::ZERO);
        t.suspend_idle(true, Instant::ZERO, Duration::ZERO);
        t.put(TimerId::Linger, Slot::Paused(Duration::MAX));
        t.put(TimerId::Idle, Slot::Off);
        assert!(t.paused() && t.idle_suspended());
        assert!(
            matches!(t.slot(TimerId::Linger), Slot::Paused(d) if d.as_micros() == u128::from(Packed::MAX))
        );
        assert_eq!(t.slot(TimerId::Idle), Slot::Off);
        assert_eq!(t.next(), None);
        // A slot's other owners read as off; clearing one of them leaves
        // the owner's timer alone.
        assert_eq!(t.slot(TimerId::Connect), Slot::Off);
        t.clear(TimerId::Connect);
        assert!(matches!(t.slot(TimerId::Linger), Slot::Paused(_)));
        t.clear(TimerId::Linger);
        t.set(TimerId::Handshake, Instant::ZERO, Duration::from_micros(7));
        assert!(t.paused() && t.idle_suspended());
        assert_eq!(t.next(), Some(Instant::from_micros(7)));
        assert_eq!(
            t.take_expired(Instant::from_micros(7)),
            Some(TimerId::Handshake)
        );
        // The end of time stays a deadline, never "off" or "paused".
        let end = Packed::new(TimerId::Idle, Slot::At(Instant::from_micros(u64::MAX)));
        assert!(matches!(end.get(), Slot::At(_)));
        assert_eq!(end.owner(), TimerId::Idle);
        let long = Packed::new(TimerId::AbortFlush, Slot::Paused(Duration::MAX));
        assert!(matches!(long.get(), Slot::Paused(_)));
        assert_eq!(long.owner(), TimerId::AbortFlush);
    }

    /// Three words, where one per timer was seven (issue 10).
    #[test]
    fn the_table_is_three_words() {
        assert_eq!(core::mem::size_of::<TimerTable>(), 24);
    }

    #[test]
    fn earliest_first_and_suspension() {
        let mut t = TimerTable::default();
        let z = Instant::ZERO;
        t.set(TimerId::Linger, z, MS(20));
        t.set(TimerId::Idle, z, MS(10));
        assert_eq!(t.next(), Some(Instant::from_millis(10)));
        t.suspend_idle(true, z, MS(0));
        assert_eq!(t.next(), Some(Instant::from_millis(20)));
        assert_eq!(t.take_expired(Instant::from_millis(15)), None);
        t.suspend_idle(false, z, MS(30));
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
    fn paused_peer_timers_keep_the_time_they_had_left() {
        let mut t = TimerTable::default();
        let at = Instant::from_millis;
        t.set(TimerId::Linger, at(0), MS(10));
        t.set(TimerId::Keepalive, at(0), MS(70));
        // Paused at 4 ms with 6 ms left; keepalive is ours and runs on.
        t.pause_peer_timers(true, at(4));
        assert!(t.is_paused());
        assert_eq!(t.next(), Some(at(70)));
        assert_eq!(t.take_expired(at(50)), None);
        // Armed while paused: the whole time is kept for later.
        t.set(TimerId::Idle, at(50), MS(15));
        t.pause_peer_timers(false, at(60));
        assert_eq!(t.get(TimerId::Linger), Some(at(66)));
        assert_eq!(t.get(TimerId::Idle), Some(at(75)));
        // Resuming twice does not move them.
        t.pause_peer_timers(false, at(90));
        assert_eq!(t.get(TimerId::Linger), Some(at(66)));
        // A phase timer that is ours (abort-flush) shares the slot of the
        // peer's (linger) but is never paused.
        let mut f = TimerTable::default();
        f.set(TimerId::AbortFlush, at(0), MS(10));
        f.pause_peer_timers(true, at(1));
        assert_eq!(f.next(), Some(at(10)));
        f.pause_peer_timers(false, at(2));
        f.clear(TimerId::AbortFlush);
        f.pause_peer_timers(true, at(3));
        f.set(TimerId::Connect, at(3), MS(10));
        assert_eq!(f.next(), None);
        f.pause_peer_timers(false, at(5));
        assert_eq!(f.get(TimerId::Connect), Some(at(15)));
        // A timer already due when the pause begins is not paused: it fires.
        let mut o = TimerTable::default();
        o.set(TimerId::Idle, at(0), MS(10));
        o.pause_peer_timers(true, at(20));
        assert_eq!(o.take_expired(at(20)), Some(TimerId::Idle));
        // Short pauses (a PING's round trip) only delay: the timer fires.
        let mut t = TimerTable::default();
        t.set(TimerId::Linger, at(0), MS(100));
        for k in 0..10 {
            t.pause_peer_timers(true, at(k * 10));
            t.pause_peer_timers(false, at(k * 10 + 2));
        }
        assert_eq!(t.get(TimerId::Linger), Some(at(120)));
    }
}
