//! A byte of one-bit flags, for the state kept per connection ([`Link`](crate::Link),
//! and the drivers' own per-connection records): one byte where a `bool`
//! each would take one per flag and round the struct up (idle memory).

/// One-bit flags; each user names its bits as `u8` constants.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Flags(u8);

impl Flags {
    /// The flags `bits` set, the others clear.
    pub const fn new(bits: u8) -> Self {
        Self(bits)
    }

    /// Whether flag `f` is set.
    pub fn get(self, f: u8) -> bool {
        self.0 & f != 0
    }

    /// Sets or clears flag `f`.
    pub fn set(&mut self, f: u8, on: bool) {
        if on {
            self.0 |= f;
        } else {
            self.0 &= !f;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Flags;

    #[test]
    fn flags_are_independent() {
        let mut f = Flags::new(1);
        f.set(4, true);
        f.set(1, false);
        assert!(!f.get(1) && !f.get(2) && f.get(4));
        f.set(4, false);
        assert_eq!(f, Flags::default());
    }
}
