//! Every hex vector in `docs/protocol.md` is checked here, both ways: the hex
//! parses to the frame named in `bookend_wire::vectors`, and that frame emits
//! exactly the hex. Vectors are found by their fenced-block info string
//! (```` ```hex vector=NAME ````), so adding one to the spec without adding it to
//! the table (or the reverse) fails the test.

use bookend_wire::vectors::{FRAME_VECTORS, SEED_CALLEE_TO_CALLER, SEED_CALLER_TO_CALLEE, Vector};
use bookend_wire::{Decoded, Limits, decode};

const SPEC: &str = include_str!("../../../docs/protocol.md");

fn spec_blocks() -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    let mut lines = SPEC.lines();
    while let Some(line) = lines.next() {
        let Some(name) = line.trim().strip_prefix("```hex vector=") else {
            continue;
        };
        let mut bytes = Vec::new();
        for body in lines.by_ref() {
            let body = body.trim();
            if body == "```" {
                break;
            }
            // Everything after '#' on a line is commentary.
            let body = body.split('#').next().unwrap_or("");
            for tok in body.split_whitespace() {
                bytes.push(
                    u8::from_str_radix(tok, 16)
                        .unwrap_or_else(|_| panic!("bad hex {tok:?} in {name}")),
                );
            }
        }
        out.push((name.trim().to_string(), bytes));
    }
    out
}

fn emit_all(frames: &[Vector]) -> Vec<u8> {
    let mut out = Vec::new();
    for (_, repr) in frames {
        let at = out.len();
        out.resize(at + repr.buffer_len(), 0);
        repr.emit(&mut out[at..]).unwrap();
    }
    out
}

fn check_stream(name: &str, hex: &[u8], frames: &[Vector]) {
    assert_eq!(
        hex,
        &emit_all(frames)[..],
        "emit of {name} differs from the spec"
    );
    let mut rest = hex;
    for (label, expected) in frames {
        match decode(rest, &Limits::DEFAULT).unwrap() {
            Decoded::Frame { repr, len } => {
                assert_eq!(&repr, expected, "{name}: {label}");
                rest = &rest[len..];
            }
            Decoded::Incomplete { needed } => panic!("{name}: {label} incomplete, {needed} more"),
        }
    }
    assert!(rest.is_empty(), "{name}: trailing bytes");
}

#[test]
fn every_spec_vector_parses_and_emits() {
    let blocks = spec_blocks();
    let mut seen = Vec::new();
    for (name, hex) in &blocks {
        match name.as_str() {
            "seed-caller-to-callee" => check_stream(name, hex, SEED_CALLER_TO_CALLEE),
            "seed-callee-to-caller" => check_stream(name, hex, SEED_CALLEE_TO_CALLER),
            _ => {
                let (_, repr) = FRAME_VECTORS
                    .iter()
                    .find(|(n, _)| n == name)
                    .unwrap_or_else(|| {
                        panic!("spec vector {name} has no entry in bookend_wire::vectors")
                    });
                check_stream(name, hex, &[(name_static(name), *repr)]);
            }
        }
        seen.push(name.clone());
    }
    for (name, _) in FRAME_VECTORS {
        assert!(
            seen.iter().any(|s| s == name),
            "vector {name} missing from docs/protocol.md"
        );
    }
    assert!(seen.iter().any(|s| s == "seed-caller-to-callee"));
    assert!(seen.iter().any(|s| s == "seed-callee-to-caller"));
}

fn name_static(name: &str) -> &'static str {
    FRAME_VECTORS
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(n, _)| *n)
        .unwrap()
}

/// The error vectors of §10.2: each must be refused with the stated error.
#[test]
fn refused_vectors() {
    use bookend_wire::{Error, FrameType};
    let cases: &[(&[u8], Error)] = &[
        (&[0x00, 0, 0, 0, 0, 0], Error::ReservedFrameType),
        (
            &[0x40, 0x80, 0, 0, 0, 0],
            Error::UnknownCriticalFrame { frame_type: 0x40 },
        ),
        (
            &[0x04, 0, 0, 0, 0x40, 0x01],
            Error::FrameTooLarge {
                frame_type: FrameType::Data,
                len: 0x4001,
                max: 0x4000,
            },
        ),
        (
            &[0x05, 0x00, 0, 0, 0, 1, 0x2a],
            Error::DataWithoutFlag {
                frame_type: FrameType::Disconnect,
            },
        ),
        (
            &[0x07, 0x00, 0, 0, 0, 1, 0x00],
            Error::FrameTooLarge {
                frame_type: FrameType::Ping,
                len: 1,
                max: 0,
            },
        ),
        (
            &[0x01, 0x00, 0, 0, 0, 8, b'N', b'O', b'P', b'E', 1, 1, 0, 0],
            Error::BadMagic,
        ),
        (
            &[0x03, 0x00, 0, 0, 0, 1, 0x00],
            Error::BodyTooShort {
                frame_type: FrameType::Reject,
            },
        ),
    ];
    for (bytes, err) in cases {
        assert_eq!(decode(bytes, &Limits::DEFAULT), Err(*err), "{bytes:02x?}");
    }
}
