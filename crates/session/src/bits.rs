//! A byte of one-bit flags, for state every session keeps (`Session`, its
//! receive side): one byte where a `bool` each would take one per flag and
//! round the struct up (issue 10: idle memory).

/// One-bit flags; each user names its bits as `u8` constants.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Flags(u8);

impl Flags {
    /// Whether flag `f` is set (any of them, for several bits).
    pub(crate) fn get(self, f: u8) -> bool {
        self.0 & f != 0
    }

    /// Sets or clears flag `f` (all of them, for several bits).
    pub(crate) fn set(&mut self, f: u8, on: bool) {
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
        let mut f = Flags::default();
        f.set(1 | 4, true);
        f.set(1, false);
        assert!(!f.get(1) && !f.get(2) && f.get(4));
        f.set(4, false);
        assert_eq!(f, Flags::default());
    }
}
