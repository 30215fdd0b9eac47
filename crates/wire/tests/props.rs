//! Property tests of the codec: emit/parse identity, no panic on any input,
//! and chunking independence of the streaming decoder.

use bookend_wire::{
    AcceptRepr, ConnectRepr, Decoded, FrameRepr, Integrity, Limits, Mode, OptionsRepr, Reason,
    ReasonRepr, decode,
};
use proptest::prelude::*;

/// An owned description of a frame, so proptest can generate and shrink it.
#[derive(Debug, Clone)]
enum Owned {
    Connect {
        min: u8,
        max: u8,
        options: OptionsRepr,
        data: Option<Vec<u8>>,
    },
    Accept {
        version: u8,
        options: OptionsRepr,
        data: Option<Vec<u8>>,
    },
    Reject {
        reason: u16,
        data: Option<Vec<u8>>,
    },
    Data {
        eom: bool,
        payload: Vec<u8>,
    },
    Disconnect {
        data: Option<Vec<u8>>,
    },
    Abort {
        reason: u16,
        data: Option<Vec<u8>>,
    },
    Ping,
    Unknown {
        frame_type: u8,
        len: u32,
    },
}

impl Owned {
    fn repr(&self) -> FrameRepr<'_> {
        match self {
            Self::Connect {
                min,
                max,
                options,
                data,
            } => FrameRepr::Connect(ConnectRepr {
                min_version: *min,
                max_version: *max,
                options: *options,
                data: data.as_deref(),
            }),
            Self::Accept {
                version,
                options,
                data,
            } => FrameRepr::Accept(AcceptRepr {
                version: *version,
                options: *options,
                data: data.as_deref(),
            }),
            Self::Reject { reason, data } => FrameRepr::Reject(ReasonRepr {
                reason: Reason(*reason),
                data: data.as_deref(),
            }),
            Self::Data { eom, payload } => FrameRepr::Data {
                end_of_message: *eom,
                payload,
            },
            Self::Disconnect { data } => FrameRepr::Disconnect {
                data: data.as_deref(),
            },
            Self::Abort { reason, data } => FrameRepr::Abort(ReasonRepr {
                reason: Reason(*reason),
                data: data.as_deref(),
            }),
            Self::Ping => FrameRepr::Ping,
            Self::Unknown { frame_type, len } => FrameRepr::Unknown {
                frame_type: *frame_type,
                len: *len,
            },
        }
    }
}

fn bytes(max: usize) -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec(any::<u8>(), 0..max)
}

fn options() -> impl Strategy<Value = OptionsRepr> {
    (
        prop::option::of(64u32..=16 * 1024 * 1024),
        prop::option::of(16u32..=16 * 1024 * 1024),
        prop::option::of(16u32..=1024 * 1024),
        prop::option::of(16u32..=1024 * 1024),
        prop::option::of(prop_oneof![Just(Mode::Stream), Just(Mode::Message)]),
        prop::option::of(0u32..=3_600_000),
        prop::option::of(prop_oneof![Just(Integrity::None), Just(Integrity::Crc32c)]),
        prop::option::of(any::<u32>()),
    )
        .prop_map(|(f, m, c, d, mode, k, integrity, crc)| OptionsRepr {
            max_frame_size: f,
            max_message_size: m,
            max_connect_data: c,
            max_disconnect_data: d,
            mode,
            keepalive_ms: k,
            integrity,
            // The CRC rides on the INTEGRITY option: without it, none.
            connect_crc: crc.filter(|_| integrity.is_some()),
        })
}

fn frame() -> impl Strategy<Value = Owned> {
    prop_oneof![
        (
            1u8..=255,
            0u8..=255,
            options(),
            prop::option::of(bytes(300))
        )
            .prop_map(|(min, extra, options, data)| Owned::Connect {
                min,
                max: min.saturating_add(extra),
                options,
                data
            }),
        (1u8..=255, options(), prop::option::of(bytes(300))).prop_map(
            |(version, options, data)| Owned::Accept {
                version,
                options,
                data
            }
        ),
        (any::<u16>(), prop::option::of(bytes(300)))
            .prop_map(|(reason, data)| Owned::Reject { reason, data }),
        (any::<bool>(), bytes(2000)).prop_map(|(eom, payload)| Owned::Data { eom, payload }),
        prop::option::of(bytes(300)).prop_map(|data| Owned::Disconnect { data }),
        (any::<u16>(), prop::option::of(bytes(300)))
            .prop_map(|(reason, data)| Owned::Abort { reason, data }),
        Just(Owned::Ping),
        (0x08u8..=0xFF, 0u32..200).prop_map(|(frame_type, len)| Owned::Unknown { frame_type, len }),
    ]
}

fn emit(frame: &Owned) -> Vec<u8> {
    let repr = frame.repr();
    let mut buf = vec![0u8; repr.buffer_len()];
    assert_eq!(repr.emit(&mut buf).unwrap(), buf.len());
    buf
}

/// A streaming reader as a transport would run it: accumulate, decode, drain.
fn decode_chunked(stream: &[u8], cuts: &[usize]) -> Vec<Vec<u8>> {
    let mut frames = Vec::new();
    let mut pending: Vec<u8> = Vec::new();
    let mut feed = |chunk: &[u8], pending: &mut Vec<u8>| {
        pending.extend_from_slice(chunk);
        loop {
            match decode(pending, &Limits::DEFAULT).unwrap() {
                Decoded::Frame { len, .. } => {
                    frames.push(pending[..len].to_vec());
                    pending.drain(..len);
                }
                Decoded::Incomplete { needed } => {
                    assert!(needed > 0);
                    break;
                }
            }
        }
    };
    let mut at = 0;
    for &cut in cuts {
        let cut = cut.clamp(at, stream.len());
        feed(&stream[at..cut], &mut pending);
        at = cut;
    }
    feed(&stream[at..], &mut pending);
    assert!(pending.is_empty(), "bytes left over");
    frames
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn emit_then_parse_is_identity(f in frame()) {
        let buf = emit(&f);
        match decode(&buf, &Limits::DEFAULT).unwrap() {
            Decoded::Frame { repr, len } => {
                prop_assert_eq!(len, buf.len());
                prop_assert_eq!(repr, f.repr());
            }
            Decoded::Incomplete { .. } => prop_assert!(false, "complete frame reported incomplete"),
        }
    }

    #[test]
    fn sealed_emit_then_parse_is_identity(f in frame()) {
        let repr = f.repr();
        let mut buf = vec![0u8; repr.sealed_buffer_len()];
        prop_assert_eq!(repr.emit_sealed(&mut buf), Ok(buf.len()));
        match decode(&buf, &Limits::DEFAULT).unwrap() {
            Decoded::Frame { repr: got, len } => {
                prop_assert_eq!(len, buf.len());
                prop_assert_eq!(got, repr);
            }
            Decoded::Incomplete { .. } => prop_assert!(false, "complete frame reported incomplete"),
        }
    }

    /// Damage that keeps the CRC32C flag is always refused: CRC-32C catches
    /// every burst of up to 32 bits, and these flips span at most 4 bytes.
    #[test]
    fn sealed_frames_refuse_short_bursts(f in frame(), at in any::<usize>(), burst in any::<u32>()) {
        let repr = f.repr();
        let mut buf = vec![0u8; repr.sealed_buffer_len()];
        repr.emit_sealed(&mut buf).unwrap();
        let start = at % buf.len();
        for (i, b) in burst.to_be_bytes().iter().enumerate() {
            if let Some(x) = buf.get_mut(start + i) {
                *x ^= b;
            }
        }
        let mut clean = vec![0u8; repr.sealed_buffer_len()];
        repr.emit_sealed(&mut clean).unwrap();
        if buf[1] & bookend_wire::flags::CRC32C != 0 && buf != clean {
            let result = decode(&buf, &Limits::DEFAULT);
            prop_assert!(
                !matches!(result, Ok(Decoded::Frame { .. })),
                "damaged frame passed: {:?}", result
            );
        }
    }

    #[test]
    fn emit_refuses_short_buffers(f in frame(), short in 0usize..64) {
        let repr = f.repr();
        let len = repr.buffer_len().saturating_sub(short + 1);
        let mut buf = vec![0u8; len];
        prop_assert!(repr.emit(&mut buf).is_err());
    }

    #[test]
    fn arbitrary_bytes_never_panic(data in bytes(4096)) {
        let _ = decode(&data, &Limits::DEFAULT);
        let small = Limits::new(64, 16, 16).unwrap();
        let _ = decode(&data, &small);
        let _ = bookend_wire::FrameRepr::parse(&bookend_wire::Frame::new_unchecked(&data[..]));
        let _ = OptionsRepr::parse(&data);
        let _ = bookend_wire::verify(&data);
        let _ = bookend_wire::verify_header(&data);
        let _ = bookend_wire::verify_connect(&data);
        let _ = bookend_wire::connect_integrity_proposal(&data);
    }

    #[test]
    fn mutated_valid_frames_never_panic(f in frame(), flips in prop::collection::vec((any::<usize>(), any::<u8>()), 1..8)) {
        let mut buf = emit(&f);
        for (at, x) in flips {
            if !buf.is_empty() {
                let i = at % buf.len();
                buf[i] ^= x;
            }
        }
        let _ = decode(&buf, &Limits::DEFAULT);
    }

    #[test]
    fn any_chunking_decodes_the_same_frames(
        fs in prop::collection::vec(frame(), 1..12),
        cuts in prop::collection::vec(any::<usize>(), 0..40),
        one_byte in any::<bool>(),
    ) {
        let frames: Vec<Vec<u8>> = fs.iter().map(emit).collect();
        let stream: Vec<u8> = frames.concat();
        let mut cuts: Vec<usize> = if one_byte {
            (0..stream.len()).collect()
        } else {
            cuts.iter().map(|c| c % (stream.len() + 1)).collect()
        };
        cuts.sort_unstable();
        prop_assert_eq!(decode_chunked(&stream, &cuts), frames);
    }
}

proptest! {
    // Cheap cases, and the shapes that matter are a few in a thousand.
    #![proptest_config(ProptestConfig::with_cases(8192))]

    /// The integrity checks of a CONNECT (§2.5) read a frame's options
    /// before its layout is validated: whatever the bytes, sealed or not,
    /// with the options block reaching anywhere, they never panic.
    #[test]
    fn connect_integrity_checks_never_panic(
        sealed in any::<bool>(),
        len in prop::option::of(0u32..64),
        opts_len in 0u16..24,
        integrity_at in prop::option::of(0usize..16),
        tlvs in bytes(16),
    ) {
        let header = if sealed { 10 } else { 6 };
        let mut f = vec![0x01, if sealed { 0x40 } else { 0x00 }, 0, 0, 0, 0];
        if sealed {
            f.extend_from_slice(&[0; 4]);
        }
        f.extend_from_slice(b"BKND\x01\x01");
        f.extend_from_slice(&opts_len.to_be_bytes());
        f.extend_from_slice(&tlvs);
        if let Some(skip) = integrity_at {
            // A 5-byte INTEGRITY option first in the block (then the walk
            // finds it), or anywhere after.
            let at = if skip % 2 == 0 { header + 8 } else { header + 8 + skip };
            let at = at.min(f.len());
            f.splice(at..at, [0, 7, 0, 5, 1]);
        }
        // The announced length: the frame's own (so that the checks get as
        // far as the options), or any.
        let len = len.unwrap_or((f.len() - header) as u32);
        f[2..6].copy_from_slice(&len.to_be_bytes());
        if sealed {
            let mut six = [0u8; 6];
            six.copy_from_slice(&f[..6]);
            f[6..10].copy_from_slice(&bookend_wire::header_check(&six).to_be_bytes());
        }
        for cut in 0..=f.len() {
            let b = &f[..cut];
            let _ = bookend_wire::verify_connect(b);
            let _ = bookend_wire::connect_integrity_proposal(b);
            let _ = bookend_wire::verify(b);
            let _ = decode(b, &Limits::DEFAULT);
        }
    }
}
