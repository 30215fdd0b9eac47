/*! Frame codec of the bookend session protocol, version 1.

bookend carries Windows Sockets 2 style connect data, conditional accept and
disconnect data over one TCP connection. This crate is the wire layer only: it
turns bytes into typed, borrowed frame representations and back, in the manner of
smoltcp's `wire` module. The normative description is `docs/protocol.md`.

* `#![no_std]`, no `alloc`, `#![forbid(unsafe_code)]`.
* [`Frame`], [`Hello`] and [`Reasoned`] are zero-copy views over any
  `T: AsRef<[u8]>`. After `check_len` (or `new_checked`) succeeds, no accessor
  panics. When parsing untrusted input, always go through `new_checked`, [`decode`]
  or [`FrameRepr::parse`].
* [`FrameRepr`] is the high-level representation; [`FrameRepr::buffer_len`] is
  exact and [`FrameRepr::emit`] writes into a caller's buffer, returning an error,
  never panicking, if it is too small.
* [`decode`] is the streaming decoder step. Given the bytes received so far it
  returns a complete frame, how many more bytes are needed at least, or a typed
  [`Error`]. Frame lengths are checked against [`Limits`] *before* a body is
  waited for, so a peer cannot make a receiver buffer more than the negotiated
  limits.

```
use bookend_wire::{decode, Decoded, FrameRepr, Limits};

let frame = FrameRepr::Disconnect { data: Some(b"42") };
let mut buf = [0u8; 16];
let n = frame.emit(&mut buf).unwrap();
assert_eq!(&buf[..n], &[0x05, 0x01, 0, 0, 0, 2, b'4', b'2']);

match decode(&buf[..n], &Limits::DEFAULT).unwrap() {
    Decoded::Frame { repr, len } => {
        assert_eq!(repr, frame);
        assert_eq!(len, n);
    }
    Decoded::Incomplete { .. } => unreachable!(),
}
```
*/
#![no_std]
#![forbid(unsafe_code)]
#![cfg_attr(docsrs, feature(doc_cfg))]
#![deny(missing_docs)]

mod decode;
mod error;
mod field;
mod frame;
mod hello;
mod integrity;
mod limits;
mod options;
mod reason;
mod repr;
pub mod vectors;

pub use decode::{Decoded, decode};
pub use error::Error;
pub use frame::{
    Frame, FrameType, HEADER_CHECK_LEN, HEADER_LEN, SEALED_HEADER_LEN, emit_header, flags,
    header_len,
};
pub use hello::{AcceptRepr, ConnectRepr, HELLO_FIXED_LEN, Hello, MAGIC, VERSION};
pub use integrity::{
    Crc32c, Integrity, SEALED_OVERHEAD, TRAILER_LEN, connect_integrity_proposal, crc32c,
    crc32c_parts, crc32c_portable, emit_sealed_header, header_check, seal, seal_connect, verify,
    verify_connect, verify_header,
};
pub use limits::{
    DEFAULT_FRAME_SIZE, DEFAULT_MESSAGE_SIZE, DEFAULT_USER_DATA, LimitError, Limits,
    MAX_FRAME_SIZE, MAX_MESSAGE_SIZE, MAX_OPTIONS_LEN, MAX_USER_DATA, MIN_FRAME_SIZE,
    MIN_MESSAGE_SIZE, MIN_USER_DATA,
};
pub use options::{
    MAX_KEEPALIVE_MS, Mode, OPTION_CRITICAL, OPTION_HEADER_LEN, OptionKind, OptionsRepr,
};
pub use reason::Reason;
pub use repr::{FrameRepr, REASON_FIXED_LEN, ReasonRepr, Reasoned};
