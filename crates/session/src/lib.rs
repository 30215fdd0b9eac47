/*! The sans-IO state machine of one bookend session.

bookend carries Windows Sockets 2 connect data, conditional accept (CF_ACCEPT,
CF_REJECT, CF_DEFER) and disconnect data (WSASendDisconnect / WSARecvDisconnect)
over one TCP connection; `docs/protocol.md` is the specification. This crate is
the whole protocol logic of one session, for either role, with no I/O, no clock
and no TCP stack: the transport hands it received bytes, FIN/RST and the time,
and takes back bytes to write, FIN/RST to perform and the next timer. Every
transport (smoltcp today, others later) shares this one implementation.

* `#![no_std]` + `alloc`, `#![forbid(unsafe_code)]`, no smoltcp types. Sessions
  share their `Config` through `alloc::sync::Arc`, so the target needs atomic
  compare-and-swap (Cortex-M3 and up, RISC-V with the A extension); targets
  without it (Cortex-M0, `thumbv6m`) are not supported yet.
* [`Session`] follows quinn-proto's taxonomy: getters, `handle_*` inputs,
  application commands, `poll_*` outputs in a documented order.
* Transitions are data: [`state::TRANSITIONS`], snapshot-tested and drawn in
  `docs/session-states.md`.
* Every buffer is bounded by the negotiated limits ([`BufferUsage`]); a peer
  that exceeds one gets ABORT and the session ends with
  [`CloseReason::ProtocolError`]; no input panics.
* Logging through `tracing` (feature `tracing`, on by default) or `defmt`
  (feature `defmt`, for firmware), or both: debug messages for every state
  change, refusal and end, each naming its session (`session 9 (Callee):
  AWAIT_CONNECT -> CONNECT_RECEIVED on ...`); `defmt::Format` on the public
  types with `defmt`.

```
use bookend_session::{Config, Event, Instant, Options, Session, TransportAction};

let t = Instant::ZERO;
let mut client = Session::caller(Config::default(), 1).unwrap();
let mut server = Session::callee(Config::default(), 2, t).unwrap();
let mut buf = [0u8; 4096];

// WSAConnect with caller data.
client.connect(t, Some(b"client-1"), Options::DEFAULT).unwrap();
let n = client.poll_transmit(t, &mut buf);
server.handle_bytes(t, &buf[..n]);
let Some(Event::ConnectRequest(req)) = server.poll_event() else { panic!() };
assert_eq!(req.caller_data.as_deref(), Some(&b"client-1"[..]));

// The condition function says CF_ACCEPT, with callee data.
server.accept(t, Some(b"welcome"), req.grant).unwrap();
let n = server.poll_transmit(t, &mut buf);
client.handle_bytes(t, &buf[..n]);
let Some(Event::Connected { callee_data, .. }) = client.poll_event() else { panic!() };
assert_eq!(callee_data.as_deref(), Some(&b"welcome"[..]));

// WSASendDisconnect(17); the server gets FD_CLOSE and reads it.
client.send_disconnect(t, Some(&17u64.to_be_bytes())).unwrap();
let n = client.poll_transmit(t, &mut buf);
server.handle_bytes(t, &buf[..n]);
assert!(server.peer_disconnected());
let mut total = [0u8; 8];
assert_eq!(server.recv_disconnect(&mut total), Ok(Some(8)));
assert_eq!(u64::from_be_bytes(total), 17);
# let _ = TransportAction::Fin;
```
*/
#![no_std]
#![forbid(unsafe_code)]
#![cfg_attr(docsrs, feature(doc_cfg))]
#![deny(missing_docs)]

extern crate alloc;

mod bits;
mod config;
mod error;
mod event;
mod fmt;
mod session;
pub mod state;
mod time;
mod timer;

pub use bookend_wire::{Integrity, Mode, Reason};
pub use config::{
    Config, ConfigError, DEFAULT_INTEGRITY, MAX_RECV_BUFFER, ModeOffer, Options, OptionsError,
    SMALL_SESSION_BUFFER,
};
pub use error::{DataKind, Error};
pub use event::{CloseReason, ConnectRequest, Event, Side, Timer, Violation};
pub use session::{
    BufferSizes, BufferUsage, BuffersError, MAX_FRAME_OVERHEAD, MAX_SPARE_CAPACITY,
    MESSAGE_OVERHEAD, MIN_DIRECT_CHUNK, ProvideError, Role, SMALL_SESSION_STORAGE, Session,
    SessionBuffers, SessionStorage, Spares, TransportAction, TransportClosed,
};
pub use state::State;
pub use time::Instant;
