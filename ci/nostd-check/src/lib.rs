//! Links the `no_std` bookend crates into a `#![no_std]` crate with its own
//! panic handler: the build fails if anything in their dependency graph uses `std`.
#![no_std]
#![forbid(unsafe_code)]

use bookend_wire::{Decoded, Limits, decode};

/// Decodes one frame; exported so the codec is really linked, not discarded.
pub fn frame_len(bytes: &[u8]) -> usize {
    match decode(bytes, &Limits::DEFAULT) {
        Ok(Decoded::Frame { len, .. }) => len,
        _ => 0,
    }
}

/// Builds a callee session: the session machine compiles against `core` + `alloc` only.
#[cfg(feature = "alloc")]
pub fn callee_state() -> bookend_session::State {
    let config = bookend_session::Config::default();
    match bookend_session::Session::callee(config, 0, bookend_session::Instant::ZERO) {
        Ok(s) => s.state(),
        Err(_) => bookend_session::State::Closed,
    }
}

/// Builds a driver endpoint: the smoltcp driver compiles against `core` + `alloc` only.
#[cfg(feature = "alloc")]
pub fn endpoint_ok() -> bool {
    bookend_smoltcp::Endpoint::new(bookend_smoltcp::Config::new(1)).is_ok()
}

#[cfg(not(test))]
#[panic_handler]
fn panic(_: &core::panic::PanicInfo<'_>) -> ! {
    loop {}
}
