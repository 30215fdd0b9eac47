//! Encodes and decodes the seed scenario's frames (`docs/protocol.md` §9) and
//! prints them as a table with their hex: the interim main job of the
//! foundation, until the `bookend demo` over a simulated network exists.
//!
//! Run with `cargo run -p bookend-wire --example seed_frames`; add `--vectors`
//! to print the spec's §10 vectors as well.

use bookend_wire::vectors::{FRAME_VECTORS, SEED_CALLEE_TO_CALLER, SEED_CALLER_TO_CALLEE, Vector};
use bookend_wire::{Decoded, FrameRepr, Limits, decode};

fn hex(bytes: &[u8]) -> String {
    bytes
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(" ")
}

fn describe(repr: &FrameRepr<'_>) -> String {
    let shown = |d: Option<&[u8]>| match d {
        None => "no data".to_string(),
        Some(d) if d.len() == 8 && !d.iter().all(u8::is_ascii_graphic) => {
            format!("{} ({:?})", u64::from_be_bytes(d.try_into().unwrap()), d)
        }
        Some(d) => format!("{:?}", String::from_utf8_lossy(d)),
    };
    match repr {
        FrameRepr::Connect(c) => format!(
            "v{}..v{} caller data {}",
            c.min_version,
            c.max_version,
            shown(c.data)
        ),
        FrameRepr::Accept(a) => format!("v{} callee data {}", a.version, shown(a.data)),
        FrameRepr::Reject(r) | FrameRepr::Abort(r) => format!("{} {}", r.reason, shown(r.data)),
        FrameRepr::Data {
            end_of_message,
            payload,
        } => {
            format!(
                "{:?}{}",
                String::from_utf8_lossy(payload),
                if *end_of_message { " EOM" } else { "" }
            )
        }
        FrameRepr::Disconnect { data } => shown(*data),
        FrameRepr::Ping => String::new(),
        FrameRepr::Unknown { frame_type, len } => {
            format!("type {frame_type:#04x}, {len} bytes skipped")
        }
    }
}

/// Emits every frame into one byte stream, then decodes the stream back and
/// checks each frame, printing a row per frame.
fn play(direction: &str, frames: &[Vector]) -> Vec<u8> {
    let mut stream = Vec::new();
    for (_, repr) in frames {
        let start = stream.len();
        stream.resize(start + repr.buffer_len(), 0);
        let n = repr.emit(&mut stream[start..]).expect("exact buffer");
        assert_eq!(n, repr.buffer_len());
    }
    let mut rest = &stream[..];
    for (label, expected) in frames {
        let Decoded::Frame { repr, len } = decode(rest, &Limits::DEFAULT).expect("valid frame")
        else {
            panic!("stream ended inside {label}");
        };
        assert_eq!(&repr, expected, "{label} did not round-trip");
        println!(
            "{direction:<8} {:<34} {:>4} B  {}",
            label,
            len,
            describe(&repr)
        );
        println!("         {}", hex(&rest[..len]));
        rest = &rest[len..];
    }
    assert!(rest.is_empty());
    stream
}

fn main() {
    println!("bookend protocol v1: the seed scenario's frames (docs/protocol.md §9)\n");
    let up = play("caller>", SEED_CALLER_TO_CALLEE);
    let down = play("<callee", SEED_CALLEE_TO_CALLER);
    println!(
        "\ncaller->callee stream: {} bytes, then TCP FIN (after step 6)",
        up.len()
    );
    println!(
        "callee->caller stream: {} bytes, then TCP FIN (step 5a)",
        down.len()
    );
    let args: Vec<String> = std::env::args().collect();
    if let Some(i) = args.iter().position(|a| a == "--corpus") {
        let dir = std::path::Path::new(
            args.get(i + 1)
                .map_or("fuzz/corpus/wire_decode", String::as_str),
        );
        std::fs::create_dir_all(dir).expect("create corpus directory");
        // Three limit bytes (defaults-ish), then the stream: the fuzz target's input format.
        let mut seed = vec![255u8, 255, 255];
        seed.extend_from_slice(&up);
        std::fs::write(dir.join("seed-caller"), &seed).expect("write corpus");
        for (name, repr) in FRAME_VECTORS {
            let mut bytes = vec![255u8, 255, 255];
            let at = bytes.len();
            bytes.resize(at + repr.buffer_len(), 0);
            repr.emit(&mut bytes[at..]).expect("exact buffer");
            std::fs::write(dir.join(name), bytes).expect("write corpus");
        }
        println!("corpus written to {}", dir.display());
    }
    if args.iter().any(|a| a == "--vectors") {
        println!("\n§10 vectors:");
        play("vector", FRAME_VECTORS);
    }
    println!("\nall frames encoded and decoded back unchanged");
}
