//! The frames of `docs/protocol.md` §10 (test vectors) and §9 (the seed
//! scenario), as data. Shared by the vector tests, the `seed_frames` example
//! and the fuzz corpus, so that the spec, the tests and the demo cannot drift.

use crate::{
    AcceptRepr, ConnectRepr, FrameRepr, Integrity, Mode, OptionsRepr, Reason, ReasonRepr, VERSION,
};

/// The options a default bookend caller proposes (every v1 option, explicit).
pub const DEFAULT_OPTIONS: OptionsRepr = OptionsRepr {
    max_frame_size: Some(16_384),
    max_message_size: Some(65_536),
    max_connect_data: Some(65_536),
    max_disconnect_data: Some(65_536),
    mode: Some(Mode::Stream),
    keepalive_ms: Some(30_000),
    integrity: None,
    connect_crc: None,
};

/// Message-mode variant of [`DEFAULT_OPTIONS`], used by the seed scenario.
pub const MESSAGE_OPTIONS: OptionsRepr = OptionsRepr {
    mode: Some(Mode::Message),
    ..DEFAULT_OPTIONS
};

/// The seed scenario's client transaction total (step 1) ...
pub const SEED_CLIENT_TOTAL: u64 = 17;
/// ... the server's cumulative total before this client ...
pub const SEED_PRIOR_TOTAL: u64 = 1000;
/// ... and the grand total it answers with (step 5).
pub const SEED_GRAND_TOTAL: u64 = SEED_PRIOR_TOTAL + SEED_CLIENT_TOTAL;

const CLIENT_TOTAL_BYTES: [u8; 8] = SEED_CLIENT_TOTAL.to_be_bytes();
const GRAND_TOTAL_BYTES: [u8; 8] = SEED_GRAND_TOTAL.to_be_bytes();

/// One named vector: the spec's block name and the frame it must decode to.
pub type Vector = (&'static str, FrameRepr<'static>);

/// One instance of every frame type, plus the edge cases the spec calls out.
pub const FRAME_VECTORS: &[Vector] = &[
    (
        "connect",
        FrameRepr::Connect(ConnectRepr {
            min_version: VERSION,
            max_version: VERSION,
            options: DEFAULT_OPTIONS,
            data: Some(b"client-1"),
        }),
    ),
    (
        "connect-minimal",
        FrameRepr::Connect(ConnectRepr {
            min_version: VERSION,
            max_version: VERSION,
            options: OptionsRepr::NONE,
            data: None,
        }),
    ),
    (
        "accept",
        FrameRepr::Accept(AcceptRepr {
            version: VERSION,
            options: DEFAULT_OPTIONS,
            data: Some(b"welcome"),
        }),
    ),
    (
        "connect-integrity",
        FrameRepr::Connect(ConnectRepr {
            min_version: VERSION,
            max_version: VERSION,
            options: CONNECT_INTEGRITY_OPTIONS,
            data: Some(b"client-1"),
        }),
    ),
    (
        "reject",
        FrameRepr::Reject(ReasonRepr {
            reason: Reason::BUSY,
            data: Some(b"try later"),
        }),
    ),
    (
        "data",
        FrameRepr::Data {
            end_of_message: false,
            payload: b"hello",
        },
    ),
    (
        "data-eom-empty",
        FrameRepr::Data {
            end_of_message: true,
            payload: b"",
        },
    ),
    (
        "disconnect",
        FrameRepr::Disconnect {
            data: Some(&CLIENT_TOTAL_BYTES),
        },
    ),
    ("disconnect-no-data", FrameRepr::Disconnect { data: None }),
    (
        "disconnect-empty-data",
        FrameRepr::Disconnect { data: Some(b"") },
    ),
    (
        "abort",
        FrameRepr::Abort(ReasonRepr {
            reason: Reason::application(1),
            data: Some(b"bye"),
        }),
    ),
    ("ping", FrameRepr::Ping),
    (
        "unknown-skippable",
        FrameRepr::Unknown {
            frame_type: 0x40,
            len: 3,
        },
    ),
];

/// Caller to callee, in order: the seed scenario in message mode with one
/// transaction, then step 1's DISCONNECT carrying the transaction total.
pub const SEED_CALLER_TO_CALLEE: &[Vector] = &[
    (
        "CONNECT",
        FrameRepr::Connect(ConnectRepr {
            min_version: VERSION,
            max_version: VERSION,
            options: MESSAGE_OPTIONS,
            data: Some(b"client-1"),
        }),
    ),
    (
        "DATA (transaction request)",
        FrameRepr::Data {
            end_of_message: true,
            payload: b"txn 1",
        },
    ),
    (
        "DISCONNECT (1) transaction total",
        FrameRepr::Disconnect {
            data: Some(&CLIENT_TOTAL_BYTES),
        },
    ),
];

/// Callee to caller, in order: ACCEPT, the reply, then step 5's DISCONNECT
/// carrying the grand total.
pub const SEED_CALLEE_TO_CALLER: &[Vector] = &[
    (
        "ACCEPT",
        FrameRepr::Accept(AcceptRepr {
            version: VERSION,
            options: MESSAGE_OPTIONS,
            data: Some(b"welcome"),
        }),
    ),
    (
        "DATA (transaction reply)",
        FrameRepr::Data {
            end_of_message: true,
            payload: b"ok 1",
        },
    ),
    (
        "DISCONNECT (5) grand total",
        FrameRepr::Disconnect {
            data: Some(&GRAND_TOTAL_BYTES),
        },
    ),
];

/// Options with only `INTEGRITY` = CRC-32C: what the sealed handshake
/// vectors carry (every other option takes its default).
pub const INTEGRITY_OPTIONS: OptionsRepr = OptionsRepr {
    integrity: Some(Integrity::Crc32c),
    ..OptionsRepr::NONE
};

/// What a caller proposing integrity sends: `INTEGRITY` = 1 with the check
/// of its whole CONNECT (`seal_connect`), caller data "client-1" in the
/// vector `connect-integrity`.
pub const CONNECT_INTEGRITY_OPTIONS: OptionsRepr = OptionsRepr {
    connect_crc: Some(CLIENT_1_CRC),
    ..INTEGRITY_OPTIONS
};

/// The check of the `connect-integrity` CONNECT: the CRC-32C of the frame
/// with these 4 bytes as zero.
pub const CLIENT_1_CRC: u32 = 0x79d8_469e;

/// Frames of §10.3, emitted *sealed* (`FrameRepr::emit_sealed`): with the
/// CRC32C flag and the CRC-32C trailer of §2.5.
pub const SEALED_VECTORS: &[Vector] = &[
    (
        "sealed-connect",
        FrameRepr::Connect(ConnectRepr {
            min_version: VERSION,
            max_version: VERSION,
            options: INTEGRITY_OPTIONS,
            data: Some(b"client-1"),
        }),
    ),
    (
        "sealed-accept",
        FrameRepr::Accept(AcceptRepr {
            version: VERSION,
            options: INTEGRITY_OPTIONS,
            data: Some(b"welcome"),
        }),
    ),
    (
        "sealed-data",
        FrameRepr::Data {
            end_of_message: false,
            payload: b"hello",
        },
    ),
    (
        "sealed-disconnect",
        FrameRepr::Disconnect {
            data: Some(&CLIENT_TOTAL_BYTES),
        },
    ),
    ("sealed-ping", FrameRepr::Ping),
];
