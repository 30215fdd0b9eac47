//! Every hex vector in `docs/protocol.md` is checked here, both ways: the hex
//! parses to the frame named in `bookend_wire::vectors`, and that frame emits
//! exactly the hex. Vectors are found by their fenced-block info string
//! (```` ```hex vector=NAME ````), so adding one to the spec without adding it to
//! the table (or the reverse) fails the test.

use bookend_wire::vectors::{
    FRAME_VECTORS, SEALED_VECTORS, SEED_CALLEE_TO_CALLER, SEED_CALLER_TO_CALLEE, Vector,
};
use bookend_wire::{Decoded, FrameRepr, Limits, decode, flags};

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
            n if n.starts_with("sealed-") => {
                let (label, repr) =
                    SEALED_VECTORS
                        .iter()
                        .find(|(v, _)| *v == n)
                        .unwrap_or_else(|| {
                            panic!("spec vector {name} has no entry in bookend_wire::vectors")
                        });
                check_sealed(label, hex, repr);
            }
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
    for (name, _) in FRAME_VECTORS.iter().chain(SEALED_VECTORS) {
        assert!(
            seen.iter().any(|s| s == name),
            "vector {name} missing from docs/protocol.md"
        );
    }
    assert!(seen.iter().any(|s| s == "seed-caller-to-callee"));
    assert!(seen.iter().any(|s| s == "seed-callee-to-caller"));
}

/// A sealed vector: emits sealed to exactly the hex, decodes to the frame,
/// and every single-bit flip of it is refused or, where the flip clears
/// the CRC32C flag, no longer reads as a sealed frame (the session refuses
/// unsealed frames once integrity is in force, §2.5).
fn check_sealed(name: &str, hex: &[u8], repr: &FrameRepr<'_>) {
    let mut out = vec![0u8; repr.sealed_buffer_len()];
    assert_eq!(repr.emit_sealed(&mut out), Ok(hex.len()), "{name}");
    assert_eq!(hex, &out[..], "sealed emit of {name} differs from the spec");
    match decode(hex, &Limits::DEFAULT).unwrap() {
        Decoded::Frame { repr: got, len } => {
            assert_eq!(&got, repr, "{name}");
            assert_eq!(len, hex.len());
        }
        Decoded::Incomplete { .. } => panic!("{name} incomplete"),
    }
    for byte in 0..hex.len() {
        for bit in 0..8 {
            let mut bad = hex.to_vec();
            bad[byte] ^= 1 << bit;
            let still_sealed = bad[1] & flags::CRC32C != 0;
            if let Ok(Decoded::Frame { repr: got, .. }) = decode(&bad, &Limits::DEFAULT) {
                assert!(
                    !still_sealed,
                    "{name}: flip {byte}.{bit} passed the CRC as {got:?}"
                );
            }
        }
    }
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
        (
            &[
                0x07, 0x40, 0, 0, 0, 4, 0x21, 0xa8, 0x7d, 0x96, 0x3a, 0x1f, 0x01, 0x04,
            ],
            Error::ChecksumMismatch {
                computed: 0x3a1f_0105,
                received: 0x3a1f_0104,
            },
        ),
        (
            &[0x07, 0x40, 0, 0, 0, 4, 0x21, 0xa8, 0x7d, 0x97],
            Error::HeaderChecksumMismatch {
                computed: 0x21a8_7d96,
                received: 0x21a8_7d97,
            },
        ),
        (
            // A sealed DATA "hello" whose length 9 was altered into 8 201:
            // refused from the 10 header bytes, not waited for.
            &[0x04, 0x40, 0, 0, 0x20, 0x09, 0xaa, 0x3c, 0xfa, 0x9f],
            Error::HeaderChecksumMismatch {
                computed: 0xd5b7_199d,
                received: 0xaa3c_fa9f,
            },
        ),
        (
            &[0x07, 0x40, 0, 0, 0, 2, 0x07, 0x09, 0x9a, 0x7e, 0x21, 0xa8],
            Error::MissingTrailer,
        ),
        (
            // A sealed CONNECT whose options block (9 bytes: INTEGRITY's
            // 5-byte form) would end inside the trailer (§2.5).
            &[
                0x01, 0x40, 0, 0, 0, 0x11, 0x6d, 0x7e, 0x39, 0x51, b'B', b'K', b'N', b'D', 1, 1, 0,
                9, 0x00, 0x07, 0x00, 0x05, 0x01, 0xa8, 0x37, 0x57, 0x86,
            ],
            Error::BadOptionsLength,
        ),
        (
            // A skippable unknown frame, sealed, whose trailer is off by one
            // bit: skipped frames are checked too (§2.3).
            &[
                0x40, 0x40, 0, 0, 0, 4, 0xa9, 0xe5, 0xda, 0xd0, 0x85, 0xdb, 0x33, 0x44,
            ],
            Error::ChecksumMismatch {
                computed: 0x85db_3345,
                received: 0x85db_3344,
            },
        ),
    ];
    for (bytes, err) in cases {
        assert_eq!(decode(bytes, &Limits::DEFAULT), Err(*err), "{bytes:02x?}");
    }
    // The table of §10.2 is this list: every row's bytes are a case here,
    // except the one only a session with integrity in force refuses
    // (checked by crates/session/tests/integrity.rs).
    let start = SPEC.find("### 10.2").expect("§10.2");
    let end = start + SPEC[start..].find("### 10.3").expect("§10.3");
    let mut rows = 0;
    for line in SPEC[start..end].lines() {
        let Some(hex) = line.strip_prefix("| `").and_then(|l| l.split('`').next()) else {
            continue;
        };
        let bytes: Vec<u8> = hex
            .split_whitespace()
            .map(|t| u8::from_str_radix(t, 16).unwrap_or_else(|_| panic!("bad hex {t:?}")))
            .collect();
        rows += 1;
        if line.contains("while integrity is in force") {
            continue;
        }
        assert!(
            cases.iter().any(|(b, _)| *b == &bytes[..]),
            "§10.2 row {hex} is not checked here"
        );
    }
    assert_eq!(rows, cases.len() + 1, "rows of §10.2 and cases here differ");
}
