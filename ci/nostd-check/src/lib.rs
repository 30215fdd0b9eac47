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

/// Builds an endpoint over TCP sockets and session buffers in the caller's
/// storage (no heap for payloads): `TcpBuffers::Provided` and
/// `SessionBuffering::Provided` compile against `core` + `alloc` only.
/// Returns the sockets it took.
#[cfg(feature = "alloc")]
pub fn endpoint_over_provided_sockets(
    storage: &'static mut bookend_smoltcp::TcpStorage<2, 1024, 1024>,
    slots: &'static mut [bookend_smoltcp::smoltcp::iface::SocketStorage<'static>; 2],
    sessions: &'static mut bookend_session::SessionStorage<
        2,
        { bookend_session::SMALL_SESSION_STORAGE },
    >,
) -> usize {
    let mut config = bookend_smoltcp::Config::small(1);
    config.tcp_buffers = bookend_smoltcp::TcpBuffers::Provided;
    config.session_buffers = bookend_smoltcp::SessionBuffering::Provided;
    let Ok(buffers) = sessions.buffers(&config.session) else {
        return 0;
    };
    let Ok(mut endpoint) = bookend_smoltcp::Endpoint::new(config) else {
        return 0;
    };
    // A fixed-size socket set, as firmware has: no heap there either.
    let mut sockets = bookend_smoltcp::smoltcp::iface::SocketSet::new(&mut slots[..]);
    for socket in storage.sockets() {
        if endpoint.add_socket(&mut sockets, socket).is_err() {
            return 0;
        }
    }
    for b in buffers {
        if endpoint.add_session_buffers(b).is_err() {
            return 0;
        }
    }
    endpoint.free_socket_count()
}

#[cfg(not(test))]
#[panic_handler]
fn panic(_: &core::panic::PanicInfo<'_>) -> ! {
    loop {}
}
