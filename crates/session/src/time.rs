//! Time as the session sees it: passed in, never read from a clock.

use core::fmt;
use core::num::NonZeroU64;
use core::ops::{Add, Sub};
use core::time::Duration;

/// A point in time, in microseconds since an epoch the caller chooses.
///
/// The session never reads a clock (`no_std`, deterministic simulation): every
/// input that depends on time takes `now`. Drivers convert their own clock,
/// for example smoltcp's `Instant::total_micros()`.
///
/// Stored as microseconds plus one in a `NonZeroU64`, so that an
/// `Option<Instant>` is 8 bytes, not 16: drivers keep several per connection
/// (issue 10: idle memory). The last representable instant, `u64::MAX - 1`
/// µs after the epoch (584 000 years), is the end of time: later ones
/// saturate to it.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Instant(NonZeroU64);

impl fmt::Debug for Instant {
    /// The microseconds since the epoch, not the stored word.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Instant")
            .field(&self.total_micros())
            .finish()
    }
}

impl Default for Instant {
    fn default() -> Self {
        Self::ZERO
    }
}

impl Instant {
    /// The epoch.
    pub const ZERO: Self = Self(NonZeroU64::MIN);

    /// From microseconds since the epoch (saturating at the end of time).
    pub const fn from_micros(us: u64) -> Self {
        Self(NonZeroU64::MIN.saturating_add(us))
    }

    /// From milliseconds since the epoch (saturating).
    pub const fn from_millis(ms: u64) -> Self {
        Self::from_micros(ms.saturating_mul(1000))
    }

    /// Microseconds since the epoch.
    pub const fn total_micros(self) -> u64 {
        self.0.get() - 1
    }

    /// `self + d`, saturating at the end of time instead of overflowing.
    pub fn saturating_add(self, d: Duration) -> Self {
        let us = u64::try_from(d.as_micros()).unwrap_or(u64::MAX);
        Self(self.0.saturating_add(us))
    }

    /// Time from `earlier` to `self`, zero if `earlier` is later.
    pub fn saturating_duration_since(self, earlier: Self) -> Duration {
        Duration::from_micros(self.0.get().saturating_sub(earlier.0.get()))
    }
}

impl Add<Duration> for Instant {
    type Output = Self;
    fn add(self, d: Duration) -> Self {
        self.saturating_add(d)
    }
}

impl Sub for Instant {
    type Output = Duration;
    fn sub(self, earlier: Self) -> Duration {
        self.saturating_duration_since(earlier)
    }
}

impl fmt::Display for Instant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let us = self.total_micros();
        write!(f, "{}.{:06}s", us / 1_000_000, us % 1_000_000)
    }
}

/// Seconds with microseconds, as `Display` writes them.
#[cfg(feature = "defmt")]
impl defmt::Format for Instant {
    fn format(&self, f: defmt::Formatter<'_>) {
        let us = self.total_micros();
        defmt::write!(f, "{=u64}.{=u64:06}s", us / 1_000_000, us % 1_000_000);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_optional_instant_is_one_word_and_arithmetic_saturates() {
        assert_eq!(core::mem::size_of::<Option<Instant>>(), 8);
        assert_eq!(Instant::ZERO.total_micros(), 0);
        assert_eq!(Instant::from_micros(5).total_micros(), 5);
        assert_eq!(Instant::from_millis(3).total_micros(), 3000);
        let end = Instant::from_micros(u64::MAX);
        assert_eq!(end.total_micros(), u64::MAX - 1);
        assert_eq!(end + Duration::from_secs(1), end);
        assert_eq!(
            Instant::from_micros(7) - Instant::from_micros(9),
            Duration::ZERO
        );
        assert_eq!(
            Instant::from_micros(9) - Instant::from_micros(7),
            Duration::from_micros(2)
        );
        assert!(Instant::ZERO < Instant::from_micros(1));
    }
}
