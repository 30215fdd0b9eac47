//! The per-frame CRC-32C trailer (`docs/protocol.md` §2.5) and the
//! `INTEGRITY` option's values (§4.1).
//!
//! TCP's 16-bit ones'-complement checksum misses corruptions whose bit flips
//! cancel (two flips in the same bit position of different 16-bit words, a
//! swapped pair of words); SCTP dropped its Adler-32 for CRC-32c for the
//! same reason (RFC 3309). A frame whose header has [`flags::CRC32C`] set is
//! sealed: its 6 header bytes are followed by their own CRC-32C (the header
//! check), so a damaged `length` is caught before the receiver waits for a
//! body that will never come, and it ends in a 4-byte CRC-32C of everything
//! before it (the trailer), so a receiver can refuse damaged frames before
//! acting on any byte of them.

use crate::Error;
use crate::field::read_u32;
use crate::frame::{Frame, HEADER_CHECK_LEN, HEADER_LEN, SEALED_HEADER_LEN, flags};

/// Length of the CRC-32C trailer a sealed frame ends in. The header's
/// `length` counts it.
pub const TRAILER_LEN: usize = 4;

/// What sealing adds to a frame: the header check and the trailer.
pub const SEALED_OVERHEAD: usize = HEADER_CHECK_LEN + TRAILER_LEN;

/// The portable CRC table: slice-by-16 (16 KiB of `static` data), the
/// fastest portable form, or with the `small-crc-table` feature one 1 KiB
/// table for firmware where flash is scarce. Used where the CPU has no
/// CRC-32C instruction (see [`crc32c`]).
#[cfg(not(feature = "small-crc-table"))]
type CrcTable = crc::Table<16>;
#[cfg(feature = "small-crc-table")]
type CrcTable = crc::Table<1>;

/// CRC-32C (Castagnoli): polynomial 0x1EDC6F41, reflected, initial value and
/// final XOR 0xFFFFFFFF, as in iSCSI (RFC 3720 §12.1) and SCTP (RFC 3309).
const CASTAGNOLI: crc::Crc<u32, CrcTable> = crc::Crc::<u32, CrcTable>::new(&crc::CRC_32_ISCSI);

/// The CRC-32C of `bytes`. `crc32c(b"123456789") == 0xE306_9283`, the
/// catalogue's check value.
///
/// With the `std` feature on x86-64 and AArch64 this uses the CPU's CRC
/// instructions when it has them (chosen at run time); elsewhere, and on
/// CPUs without them, the portable table ([`crc32c_portable`]).
pub fn crc32c(bytes: &[u8]) -> u32 {
    #[cfg(all(feature = "std", any(target_arch = "x86_64", target_arch = "aarch64")))]
    {
        // The one-shot entry skips the digest's set-up, which costs more
        // than the CRC itself for a 6-byte header.
        crc_fast::checksum(crc_fast::CrcAlgorithm::Crc32Iscsi, bytes) as u32
    }
    #[cfg(not(all(feature = "std", any(target_arch = "x86_64", target_arch = "aarch64"))))]
    {
        CASTAGNOLI.checksum(bytes)
    }
}

/// The CRC-32C of `bytes` by the portable table alone, whatever the CPU:
/// what a target without a CRC instruction (a Cortex-M4, say) runs. For
/// tests and benchmarks of that path.
pub fn crc32c_portable(bytes: &[u8]) -> u32 {
    CASTAGNOLI.checksum(bytes)
}

/// The CRC-32C of several slices, as if they were one (a header emitted
/// apart from its payload, say).
pub fn crc32c_parts(parts: &[&[u8]]) -> u32 {
    let mut d = Crc32c::new();
    for p in parts {
        d.update(p);
    }
    d.finalize()
}

/// A CRC-32C computed incrementally, over bytes that arrive in pieces (a
/// sealed frame checked where it lies, chunk by chunk, without assembling
/// it). Same result as [`crc32c`] over the pieces joined.
#[derive(Clone)]
pub struct Crc32c {
    #[cfg(all(feature = "std", any(target_arch = "x86_64", target_arch = "aarch64")))]
    digest: crc_fast::Digest,
    #[cfg(not(all(feature = "std", any(target_arch = "x86_64", target_arch = "aarch64"))))]
    digest: crc::Digest<'static, u32, CrcTable>,
}

impl Crc32c {
    /// A CRC over no bytes yet.
    pub fn new() -> Self {
        Self {
            #[cfg(all(feature = "std", any(target_arch = "x86_64", target_arch = "aarch64")))]
            digest: crc_fast::Digest::new(crc_fast::CrcAlgorithm::Crc32Iscsi),
            #[cfg(not(all(
                feature = "std",
                any(target_arch = "x86_64", target_arch = "aarch64")
            )))]
            digest: CASTAGNOLI.digest(),
        }
    }

    /// Adds `bytes`.
    pub fn update(&mut self, bytes: &[u8]) {
        self.digest.update(bytes);
    }

    /// The CRC-32C of every byte added.
    pub fn finalize(&self) -> u32 {
        #[cfg(all(feature = "std", any(target_arch = "x86_64", target_arch = "aarch64")))]
        {
            // A 32-bit CRC, widened by crc-fast's common interface.
            self.digest.finalize() as u32
        }
        #[cfg(not(all(feature = "std", any(target_arch = "x86_64", target_arch = "aarch64"))))]
        {
            self.digest.clone().finalize()
        }
    }
}

impl Default for Crc32c {
    fn default() -> Self {
        Self::new()
    }
}

impl core::fmt::Debug for Crc32c {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "Crc32c({:#010x})", self.finalize())
    }
}

/// The `INTEGRITY` option (kind 0x0007): the check every frame after ACCEPT
/// carries, in both directions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum Integrity {
    /// No check beyond TCP's (value 0; also what an absent option means).
    #[default]
    None,
    /// Every frame ends in a CRC-32C trailer (value 1).
    Crc32c,
}

impl Integrity {
    /// The wire value of the option.
    pub const fn to_u8(self) -> u8 {
        match self {
            Self::None => 0,
            Self::Crc32c => 1,
        }
    }

    /// The option value `v`, if version 1 defines it.
    pub const fn from_u8(v: u8) -> Option<Self> {
        match v {
            0 => Some(Self::None),
            1 => Some(Self::Crc32c),
            _ => None,
        }
    }
}

/// The header check of a sealed header: the CRC-32C of its first
/// [`HEADER_LEN`] bytes (type, flags with [`flags::CRC32C`] set, length).
pub fn header_check(header: &[u8; HEADER_LEN]) -> u32 {
    crc32c(header)
}

/// Writes a sealed header into the first [`SEALED_HEADER_LEN`] bytes of
/// `buf`: `frame_type`, `fl` with [`flags::CRC32C`] added, `body_len` (the
/// body without its trailer) plus [`TRAILER_LEN`], and the header check.
/// The trailer is the sender's to append after the body.
///
/// This function returns `Err(Error::BufferTooSmall)` if `buf` is shorter
/// than a sealed header, and `Err(Error::Unrepresentable)` if the length
/// field cannot carry the body and trailer.
pub fn emit_sealed_header(
    buf: &mut [u8],
    frame_type: crate::FrameType,
    fl: u8,
    body_len: usize,
) -> Result<(), Error> {
    if buf.len() < SEALED_HEADER_LEN {
        return Err(Error::BufferTooSmall {
            needed: SEALED_HEADER_LEN,
        });
    }
    let len = body_len
        .checked_add(TRAILER_LEN)
        .and_then(|l| u32::try_from(l).ok())
        .ok_or(Error::Unrepresentable)?;
    crate::frame::emit_header(buf, frame_type, fl | flags::CRC32C, len)?;
    let mut header = [0u8; HEADER_LEN];
    header.copy_from_slice(&buf[..HEADER_LEN]);
    buf[HEADER_LEN..SEALED_HEADER_LEN].copy_from_slice(&header_check(&header).to_be_bytes());
    Ok(())
}

/// Checks a sealed frame's header check: `header` holds at least the
/// [`SEALED_HEADER_LEN`] bytes of a header with [`flags::CRC32C`] set. A
/// receiver runs it as soon as those bytes are in, before it acts on the
/// type, flags or length (§2.4, §2.5). Unsealed headers pass: they carry no
/// check.
///
/// This function returns `Err(Error::Truncated)` if `header` is shorter
/// than its header, and `Err(Error::HeaderChecksumMismatch)` if the check
/// does not match.
pub fn verify_header(header: &[u8]) -> Result<(), Error> {
    if header.len() < HEADER_LEN {
        return Err(Error::Truncated);
    }
    if header[1] & flags::CRC32C == 0 {
        return Ok(());
    }
    if header.len() < SEALED_HEADER_LEN {
        return Err(Error::Truncated);
    }
    let mut six = [0u8; HEADER_LEN];
    six.copy_from_slice(&header[..HEADER_LEN]);
    let computed = header_check(&six);
    let received = read_u32(header, HEADER_LEN);
    if computed != received {
        return Err(Error::HeaderChecksumMismatch { computed, received });
    }
    Ok(())
}

/// Seals a frame in place: `buf` holds an emitted frame (header and body)
/// followed by at least [`SEALED_OVERHEAD`] spare bytes. Moves the body
/// [`HEADER_CHECK_LEN`] bytes on, sets [`flags::CRC32C`], adds the trailer
/// to the header's length, writes the header check after the header and the
/// CRC-32C of the header, its check and the body after the body. Returns
/// the sealed frame's length.
///
/// This function returns `Err(Error::Truncated)` if `buf` does not hold the
/// frame its header announces, `Err(Error::BufferTooSmall)` if the spare
/// bytes are missing, and `Err(Error::Unrepresentable)` if the length
/// field cannot grow by the trailer.
pub fn seal(buf: &mut [u8]) -> Result<usize, Error> {
    let frame = Frame::new_checked(&buf[..])?;
    let (t, fl, len, total) = (
        frame.frame_type(),
        frame.flags(),
        frame.body_len(),
        frame.total_len(),
    );
    if fl & flags::CRC32C != 0 {
        // Sealing twice would checksum the first trailer: a bug upstream.
        return Err(Error::Unrepresentable);
    }
    let needed = total + SEALED_OVERHEAD;
    if buf.len() < needed {
        return Err(Error::BufferTooSmall { needed });
    }
    buf.copy_within(HEADER_LEN..total, SEALED_HEADER_LEN);
    emit_sealed_header(buf, t, fl, len as usize)?;
    let end = needed - TRAILER_LEN;
    let crc = crc32c(&buf[..end]);
    buf[end..needed].copy_from_slice(&crc.to_be_bytes());
    Ok(needed)
}

/// Checks a sealed frame, header check first, then trailer: `frame` is
/// exactly one frame, its header with [`flags::CRC32C`] set. Returns the
/// length of the frame without its trailer (the sealed header plus the body
/// the frame type defines).
///
/// This function returns `Err(Error::HeaderChecksumMismatch)` if the header
/// check differs, `Err(Error::Truncated)` if `frame` is not the one frame
/// its header announces, `Err(Error::MissingTrailer)` if the body is
/// shorter than a trailer, and `Err(Error::ChecksumMismatch)` if the
/// trailer differs.
pub fn verify(frame: &[u8]) -> Result<usize, Error> {
    verify_header(frame)?;
    let view = Frame::new_checked(frame)?;
    if view.total_len() != frame.len() {
        return Err(Error::Truncated);
    }
    if (view.body_len() as usize) < TRAILER_LEN {
        return Err(Error::MissingTrailer);
    }
    let end = frame.len() - TRAILER_LEN;
    let computed = crc32c(&frame[..end]);
    let received = read_u32(frame, end);
    if computed != received {
        return Err(Error::ChecksumMismatch { computed, received });
    }
    Ok(end)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_hardware_and_portable_paths_agree() {
        // Every length up to a few SIMD blocks, every alignment of the
        // fold boundaries, and pieces of every size.
        let data: [u8; 1031] = core::array::from_fn(|i| (i * 131 + 7) as u8);
        for len in 0..data.len() {
            let b = &data[..len];
            assert_eq!(crc32c(b), crc32c_portable(b), "length {len}");
        }
        for split in [1, 3, 16, 63, 64, 65, 255, 512] {
            let mut d = Crc32c::new();
            for piece in data.chunks(split) {
                d.update(piece);
            }
            assert_eq!(d.finalize(), crc32c_portable(&data), "pieces of {split}");
        }
    }

    #[test]
    fn check_value_of_the_catalogue() {
        // CRC-32/ISCSI in the CRC catalogue; RFC 3720 B.4 gives the same polynomial.
        assert_eq!(crc32c(b"123456789"), 0xE306_9283);
        assert_eq!(crc32c(b""), 0);
        assert_eq!(crc32c_parts(&[b"1234", b"", b"56789"]), 0xE306_9283);
        // RFC 3720 B.4: 32 bytes of zeros.
        assert_eq!(crc32c(&[0u8; 32]), 0x8A91_36AA);
    }

    #[test]
    fn seal_then_verify_and_every_flip_is_caught() {
        let mut buf = [0x07, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];
        assert_eq!(seal(&mut buf), Ok(14));
        assert_eq!(buf[1], flags::CRC32C);
        assert_eq!(&buf[2..6], &[0, 0, 0, 4]);
        assert_eq!(verify_header(&buf), Ok(()));
        assert_eq!(verify(&buf), Ok(10));
        for byte in 0..buf.len() {
            for bit in 0..8 {
                let mut bad = buf;
                bad[byte] ^= 1 << bit;
                assert!(verify(&bad).is_err(), "flip {byte}.{bit} missed");
            }
        }
    }

    /// A sealed header with a valid check and `len`.
    fn sealed_header(len: u32, extra: usize) -> ([u8; 32], usize) {
        let mut b = [0u8; 32];
        b[0] = 0x07;
        b[1] = flags::CRC32C;
        b[2..6].copy_from_slice(&len.to_be_bytes());
        let mut six = [0u8; HEADER_LEN];
        six.copy_from_slice(&b[..6]);
        b[6..10].copy_from_slice(&header_check(&six).to_be_bytes());
        (b, SEALED_HEADER_LEN + extra)
    }

    #[test]
    fn refusals() {
        let mut short = [0x07, 0, 0, 0, 0, 0, 0, 0];
        assert_eq!(seal(&mut short), Err(Error::BufferTooSmall { needed: 14 }));
        let (b, n) = sealed_header(2, 2);
        assert_eq!(verify(&b[..n]), Err(Error::MissingTrailer));
        let (b, n) = sealed_header(4, 1);
        assert_eq!(verify(&b[..n]), Err(Error::Truncated));
        let (mut b, n) = sealed_header(4, 4);
        b[5] ^= 0x10;
        assert!(matches!(
            verify(&b[..n]),
            Err(Error::HeaderChecksumMismatch { .. })
        ));
        assert_eq!(verify_header(&b[..9]), Err(Error::Truncated));
        let mut twice = [0u8; 22];
        twice[0] = 0x07;
        seal(&mut twice).unwrap();
        assert_eq!(seal(&mut twice), Err(Error::Unrepresentable));
    }

    #[test]
    fn every_flip_of_a_sealed_header_is_caught_from_the_header() {
        let (b, _) = sealed_header(4, 4);
        for byte in 0..SEALED_HEADER_LEN {
            for bit in 0..8 {
                let mut bad = b;
                bad[byte] ^= 1 << bit;
                if bad[1] & flags::CRC32C == 0 {
                    // No longer sealed: refused as unsealed where integrity
                    // is in force, and checked by nothing elsewhere.
                    continue;
                }
                assert!(verify_header(&bad).is_err(), "flip {byte}.{bit} missed");
            }
        }
    }
}

/// Where the `INTEGRITY` option's value sits in `frame` (one whole CONNECT:
/// header and body): the offset and length of its value, at its first
/// occurrence. `None` for any other frame, a CONNECT without the option, or
/// one whose options block does not walk cleanly up to it (the parse
/// refuses those). The walk reads TLVs only by their kind and length, so it
/// finds the option wherever it sits, after an unknown critical option too.
fn connect_integrity_at(frame: &[u8]) -> Option<(usize, usize)> {
    use crate::field::read_u16;
    use crate::options::{OPTION_CRITICAL, OPTION_HEADER_LEN, OptionKind};
    if frame.first() != Some(&u8::from(crate::FrameType::Connect)) {
        return None;
    }
    let view = Frame::new_checked(frame).ok()?;
    if view.total_len() != frame.len() {
        return None;
    }
    // Body: magic (4), versions (2), options_length (2), options; a sealed
    // frame's trailer is not part of the body's layout, so a block that
    // reaches into it is not walked (the parse refuses it).
    let body_at = view.header_len();
    let end = if view.flags() & flags::CRC32C != 0 {
        frame.len().checked_sub(TRAILER_LEN)?
    } else {
        frame.len()
    };
    let opts_at = body_at + crate::HELLO_FIXED_LEN;
    let opts_len = usize::from(read_u16(frame.get(..opts_at)?, body_at + 6));
    let block = frame.get(..end)?.get(opts_at..opts_at + opts_len)?;
    let mut at = 0;
    while at + OPTION_HEADER_LEN <= block.len() {
        let kind = read_u16(block, at) & !OPTION_CRITICAL;
        let len = usize::from(read_u16(block, at + 2));
        if at + OPTION_HEADER_LEN + len > block.len() {
            return None;
        }
        if kind == OptionKind::Integrity as u16 {
            return Some((opts_at + at + OPTION_HEADER_LEN, len));
        }
        at += OPTION_HEADER_LEN + len;
    }
    None
}

/// Where the CRC of a CONNECT's `INTEGRITY` option sits in `frame`, if it
/// carries the 5-byte form: the offset of its 4 bytes.
fn connect_crc_at(frame: &[u8]) -> Option<usize> {
    match connect_integrity_at(frame) {
        Some((at, 5)) => Some(at + 1),
        _ => None,
    }
}

/// The `INTEGRITY` proposal of `frame` (one whole CONNECT), read wherever
/// the option sits in the block, even when the block as a whole does not
/// parse (an unknown critical option, say): a callee refusing such a CONNECT
/// still knows whether the caller checks sealed frames, and seals its REJECT
/// if it is willing (§2.5). [`Integrity::None`] for any other frame, an
/// absent option, or a value version 1 does not define.
pub fn connect_integrity_proposal(frame: &[u8]) -> Integrity {
    match connect_integrity_at(frame) {
        Some((at, 1 | 5)) => Integrity::from_u8(frame[at]).unwrap_or_default(),
        _ => Integrity::None,
    }
}

/// CRC-32C of `frame` with the 4 bytes at `at` taken as zero, and without
/// its trailer if it is sealed (the trailer is computed after this check is
/// written, so it cannot be covered by it).
fn crc_without(frame: &[u8], at: usize) -> u32 {
    let end = if frame[1] & flags::CRC32C != 0 {
        frame.len() - TRAILER_LEN
    } else {
        frame.len()
    };
    crc32c_parts(&[&frame[..at], &[0; 4], &frame[at + 4..end]])
}

/// Writes the check of a CONNECT that carries the 5-byte `INTEGRITY` option
/// (§2.5): the CRC-32C of the whole frame, header, options and caller data,
/// computed with the check's own 4 bytes as zero. CONNECT is never sealed, so
/// that a callee that predates the option reads it; this check lets one that
/// knows the option see any damage, a downgrade of the option included.
/// Returns whether there was a check to write.
pub fn seal_connect(frame: &mut [u8]) -> bool {
    let Some(at) = connect_crc_at(frame) else {
        return false;
    };
    let crc = crc_without(frame, at);
    frame[at..at + 4].copy_from_slice(&crc.to_be_bytes());
    true
}

/// Checks the check [`seal_connect`] wrote: `Ok(true)` if the CONNECT
/// carries one and it matches, `Ok(false)` if it carries none.
///
/// This function returns `Err(Error::ChecksumMismatch)` if it does not match.
pub fn verify_connect(frame: &[u8]) -> Result<bool, Error> {
    let Some(at) = connect_crc_at(frame) else {
        return Ok(false);
    };
    let computed = crc_without(frame, at);
    let received = read_u32(frame, at);
    if computed != received {
        return Err(Error::ChecksumMismatch { computed, received });
    }
    Ok(true)
}

#[cfg(test)]
mod connect_tests {
    use super::*;
    use crate::vectors::FRAME_VECTORS;

    #[test]
    fn the_proposal_is_found_wherever_it_sits() {
        // CONNECT header and fixed body, then `tlvs`.
        fn connect(tlvs: &[u8]) -> [u8; 64] {
            let mut f = [0u8; 64];
            f[0] = 0x01;
            f[2..6].copy_from_slice(&(8 + tlvs.len() as u32).to_be_bytes());
            f[6..10].copy_from_slice(b"BKND");
            f[10..12].copy_from_slice(&[1, 1]);
            f[12..14].copy_from_slice(&(tlvs.len() as u16).to_be_bytes());
            f[14..14 + tlvs.len()].copy_from_slice(tlvs);
            f
        }
        let unknown_critical = [0x80, 0x42, 0, 1, 9];
        let short = [0, 7, 0, 1, 1];
        let long = [0, 7, 0, 5, 1, 0, 0, 0, 0];
        for (tlvs, want) in [
            (&[][..], Integrity::None),
            (&short[..], Integrity::Crc32c),
            (&long[..], Integrity::Crc32c),
            (&[unknown_critical, short].concat()[..], Integrity::Crc32c),
            (
                &[&unknown_critical[..], &long[..]].concat()[..],
                Integrity::Crc32c,
            ),
            (&[0, 7, 0, 1, 0][..], Integrity::None),
            (&[0, 7, 0, 1, 9][..], Integrity::None),
            // A TLV running past the block hides what follows.
            (&[0x80, 0x42, 0, 9, 0, 7, 0, 1, 1][..], Integrity::None),
        ] {
            let f = connect(tlvs);
            let n = 14 + tlvs.len();
            assert_eq!(connect_integrity_proposal(&f[..n]), want, "{tlvs:02x?}");
        }
    }

    #[test]
    fn the_connect_vector_checks_and_every_flip_is_caught() {
        let (_, repr) = FRAME_VECTORS
            .iter()
            .find(|(n, _)| *n == "connect-integrity")
            .unwrap();
        let mut buf = [0u8; 64];
        let n = repr.emit(&mut buf).unwrap();
        let frame = &mut buf[..n];
        assert!(seal_connect(frame));
        assert_eq!(verify_connect(frame), Ok(true));
        for byte in 0..frame.len() {
            for bit in 0..8 {
                let mut bad = [0u8; 64];
                bad[..n].copy_from_slice(frame);
                bad[byte] ^= 1 << bit;
                // Caught, or the option is no longer found (its kind or
                // length was hit): then the parse or the grant shows it.
                assert_ne!(verify_connect(&bad[..n]), Ok(true), "flip {byte}.{bit}");
            }
        }
    }
}
