//! Fuzzes the streaming decoder and every parser of `bookend-wire`.
//!
//! The input is treated as a received byte stream under limits chosen by its
//! first bytes. Invariants checked, beyond "no panic, no hang":
//! * `decode` either consumes a frame of exactly the length its header says,
//!   or asks for more bytes (never zero), or refuses with an error;
//! * every frame that decodes re-emits and re-parses to itself; frames with a
//!   single encoding (no options, no skipped body, reserved flag bits clear)
//!   re-emit to exactly the bytes they came from;
//! * decoding is chunking-independent: feeding the stream in two pieces gives
//!   the same frames as feeding it whole.
#![no_main]

use bookend_wire::{Decoded, Frame, FrameRepr, Limits, OptionsRepr, decode};
use libfuzzer_sys::fuzz_target;

/// Decodes `stream` as far as it goes; returns the frame byte ranges.
fn frames(stream: &[u8], limits: &Limits) -> (Vec<(usize, usize)>, bool) {
    let mut at = 0;
    let mut out = Vec::new();
    loop {
        match decode(&stream[at..], limits) {
            Ok(Decoded::Frame { repr, len }) => {
                assert!(len >= bookend_wire::HEADER_LEN && at + len <= stream.len());
                check_reemit(&stream[at..at + len], &repr);
                out.push((at, len));
                at += len;
            }
            Ok(Decoded::Incomplete { needed }) => {
                assert!(needed > 0);
                return (out, false);
            }
            Err(_) => return (out, true),
        }
    }
}

fn check_reemit(original: &[u8], repr: &FrameRepr<'_>) {
    let mut buf = vec![0u8; repr.buffer_len()];
    let n = repr.emit(&mut buf).expect("emit into exact buffer");
    assert_eq!(n, buf.len());
    // Whatever the input encoding, the emitted frame re-parses to the same repr.
    let again = FrameRepr::parse(&Frame::new_checked(&buf[..]).unwrap()).unwrap();
    assert_eq!(&again, repr);
    // Frames without options or skipped bodies have one encoding once reserved
    // flag bits are zero: those must come back byte for byte.
    let fixed_layout = matches!(
        repr,
        FrameRepr::Reject(_)
            | FrameRepr::Abort(_)
            | FrameRepr::Data { .. }
            | FrameRepr::Disconnect { .. }
            | FrameRepr::Ping
    );
    let reserved_clear =
        original[1] & 0xFE == 0 && !(matches!(repr, FrameRepr::Ping) && original[1] != 0);
    if fixed_layout && reserved_clear {
        assert_eq!(original, &buf[..], "canonical frame re-emitted differently");
    }
    // A sealed frame passed its CRC-32C: sealed again it must come back byte
    // for byte too (the trailer is a function of the rest).
    let sealed = original[1] & bookend_wire::flags::CRC32C != 0;
    let sealed_clear = original[1] & !(bookend_wire::flags::CRC32C | 0x01) == 0
        && !(matches!(repr, FrameRepr::Ping) && original[1] != bookend_wire::flags::CRC32C);
    if fixed_layout && sealed && sealed_clear {
        let mut sealed_buf = vec![0u8; repr.sealed_buffer_len()];
        repr.emit_sealed(&mut sealed_buf)
            .expect("emit into exact buffer");
        assert_eq!(
            original,
            &sealed_buf[..],
            "sealed frame re-sealed differently"
        );
    }
}

fuzz_target!(|data: &[u8]| {
    if data.len() < 3 {
        return;
    }
    let limits = Limits::new(
        64 + u32::from(data[0]) * 64,
        16 + u32::from(data[1]) * 4,
        16 + u32::from(data[2]) * 4,
    )
    .unwrap_or(Limits::DEFAULT);
    let stream = &data[3..];
    let (whole, whole_err) = frames(stream, &limits);

    // Chunking independence: split at a point chosen by the data, decode the
    // first piece, then the remainder appended, as a transport would.
    let cut = stream.len() / 2;
    let (first, _) = frames(&stream[..cut], &limits);
    let consumed = first.last().map_or(0, |&(a, l)| a + l);
    let (rest, rest_err) = frames(&stream[consumed..], &limits);
    let mut joined = first.clone();
    joined.extend(rest.iter().map(|&(a, l)| (a + consumed, l)));
    assert_eq!(joined, whole, "chunking changed the frames");
    assert_eq!(rest_err, whole_err);

    let _ = OptionsRepr::parse(stream);
});
