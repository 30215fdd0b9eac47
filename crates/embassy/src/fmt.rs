//! The crate's logging shim: one call site, `tracing` and/or `defmt`.
//!
//! Firmware logs with `defmt` (smoltcp and embassy do: a format string
//! interned at build time, the arguments sent in binary), host services with
//! `tracing`. Each macro takes a format string in the syntax both accept
//! (`{}` for a value, `{:?}` for its debug form) and forwards it to whichever
//! loggers are enabled: both may be on at once (nothing about one stops the
//! other working), and with neither the arguments are only borrowed, so a
//! build without logging has no unused-variable noise and no cost. A
//! connection has no span: `defmt` has none, so every message carries its
//! session's id (the one `bookend-session`'s own messages carry) in its text
//! instead, the same for both loggers.
//!
//! Only `debug` is used here (connection ends and forced aborts); the
//! session's own messages come from `bookend-session`.
//!
//! Every argument's type implements `Display` or `Debug` (for `tracing`) and
//! `defmt::Format` (for `defmt`): the public enums derive `Format` under the
//! `defmt` feature for this.

/// A `debug`-level message (an eviction, a refusal, a forced abort).
macro_rules! debug {
    ($fmt:literal $(, $arg:expr)* $(,)?) => {{
        #[cfg(feature = "tracing")]
        ::tracing::debug!($fmt $(, $arg)*);
        #[cfg(feature = "defmt")]
        ::defmt::debug!($fmt $(, $arg)*);
        #[cfg(not(any(feature = "tracing", feature = "defmt")))]
        {
            $(let _ = &$arg;)*
        }
    }};
}

pub(crate) use debug;
