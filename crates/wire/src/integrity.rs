//! The per-frame CRC-32C trailer (`docs/protocol.md` §2.5) and the
//! `INTEGRITY` option's values (§4.1).
//!
//! TCP's 16-bit ones'-complement checksum misses corruptions whose bit flips
//! cancel (two flips in the same bit position of different 16-bit words, a
//! swapped pair of words); SCTP dropped its Adler-32 for CRC-32c for the
//! same reason (RFC 3309). A frame whose header has [`flags::CRC32C`] set
//! ends in a 4-byte CRC-32C of everything before it (header included, with
//! the flag and the length as sent), so a receiver can refuse damaged frames
//! before acting on any byte of them.

use crate::Error;
use crate::field::read_u32;
use crate::frame::{Frame, HEADER_LEN, flags};

/// Length of the CRC-32C trailer a sealed frame ends in. The header's
/// `length` counts it.
pub const TRAILER_LEN: usize = 4;

/// The CRC table: slice-by-16 (16 KiB of `static` data), the fastest
/// portable form, or with the `small-crc-table` feature one 1 KiB table for
/// firmware where flash is scarce. Targets with a CRC-32C instruction can
/// swap the implementation behind [`crc32c`] without touching the wire format.
#[cfg(not(feature = "small-crc-table"))]
type CrcTable = crc::Table<16>;
#[cfg(feature = "small-crc-table")]
type CrcTable = crc::Table<1>;

/// CRC-32C (Castagnoli): polynomial 0x1EDC6F41, reflected, initial value and
/// final XOR 0xFFFFFFFF, as in iSCSI (RFC 3720 §12.1) and SCTP (RFC 3309).
const CASTAGNOLI: crc::Crc<u32, CrcTable> = crc::Crc::<u32, CrcTable>::new(&crc::CRC_32_ISCSI);

/// The CRC-32C of `bytes`. `crc32c(b"123456789") == 0xE306_9283`, the
/// catalogue's check value.
pub fn crc32c(bytes: &[u8]) -> u32 {
    CASTAGNOLI.checksum(bytes)
}

/// The CRC-32C of several slices, as if they were one (a header emitted
/// apart from its payload, say).
pub fn crc32c_parts(parts: &[&[u8]]) -> u32 {
    let mut digest = CASTAGNOLI.digest();
    for p in parts {
        digest.update(p);
    }
    digest.finalize()
}

/// The `INTEGRITY` option (kind 0x0007): the check every frame after ACCEPT
/// carries, in both directions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
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

/// Seals a frame in place: `buf` holds an emitted frame (header and body)
/// followed by at least [`TRAILER_LEN`] spare bytes. Sets [`flags::CRC32C`],
/// adds the trailer to the header's length and writes the CRC-32C of the
/// header and body after the body. Returns the sealed frame's length.
///
/// This function returns `Err(Error::Truncated)` if `buf` does not hold the
/// frame its header announces, `Err(Error::BufferTooSmall)` if the spare
/// bytes are missing, and `Err(Error::Unrepresentable)` if the length
/// field cannot grow by the trailer.
pub fn seal(buf: &mut [u8]) -> Result<usize, Error> {
    let frame = Frame::new_checked(&buf[..])?;
    let (fl, len, total) = (frame.flags(), frame.body_len(), frame.total_len());
    if fl & flags::CRC32C != 0 {
        // Sealing twice would checksum the first trailer: a bug upstream.
        return Err(Error::Unrepresentable);
    }
    let needed = total + TRAILER_LEN;
    if buf.len() < needed {
        return Err(Error::BufferTooSmall { needed });
    }
    let sealed_len = len
        .checked_add(TRAILER_LEN as u32)
        .ok_or(Error::Unrepresentable)?;
    let mut f = Frame::new_unchecked(&mut buf[..HEADER_LEN]);
    f.set_flags(fl | flags::CRC32C);
    f.set_body_len(sealed_len);
    let crc = crc32c(&buf[..total]);
    buf[total..needed].copy_from_slice(&crc.to_be_bytes());
    Ok(needed)
}

/// Checks the trailer of a sealed frame: `frame` is exactly one frame, its
/// header with [`flags::CRC32C`] set. Returns the length of the frame
/// without its trailer (header plus the body the frame type defines).
///
/// This function returns `Err(Error::Truncated)` if `frame` is not the one
/// frame its header announces, `Err(Error::MissingTrailer)` if the body is
/// shorter than a trailer, and `Err(Error::ChecksumMismatch)` if the CRC
/// differs.
pub fn verify(frame: &[u8]) -> Result<usize, Error> {
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
        let mut buf = [0x07, 0, 0, 0, 0, 0, 0, 0, 0, 0];
        assert_eq!(seal(&mut buf), Ok(10));
        assert_eq!(buf[1], flags::CRC32C);
        assert_eq!(&buf[2..6], &[0, 0, 0, 4]);
        assert_eq!(verify(&buf), Ok(6));
        for byte in 0..buf.len() {
            for bit in 0..8 {
                let mut bad = buf;
                bad[byte] ^= 1 << bit;
                assert!(verify(&bad).is_err(), "flip {byte}.{bit} missed");
            }
        }
    }

    #[test]
    fn refusals() {
        let mut short = [0x07, 0, 0, 0, 0, 0, 0, 0];
        assert_eq!(seal(&mut short), Err(Error::BufferTooSmall { needed: 10 }));
        assert_eq!(
            verify(&[0x07, flags::CRC32C, 0, 0, 0, 2, 0, 0]),
            Err(Error::MissingTrailer)
        );
        assert_eq!(
            verify(&[0x07, flags::CRC32C, 0, 0, 0, 4, 0]),
            Err(Error::Truncated)
        );
        let mut twice = [0x07, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];
        seal(&mut twice).unwrap();
        assert_eq!(seal(&mut twice), Err(Error::Unrepresentable));
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
    // Body: magic (4), versions (2), options_length (2), options.
    let opts_at = HEADER_LEN + crate::HELLO_FIXED_LEN;
    let opts_len = usize::from(read_u16(frame.get(..opts_at)?, HEADER_LEN + 6));
    let block = frame.get(opts_at..opts_at + opts_len)?;
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

/// CRC-32C of `frame` with the 4 bytes at `at` taken as zero.
fn crc_without(frame: &[u8], at: usize) -> u32 {
    crc32c_parts(&[&frame[..at], &[0; 4], &frame[at + 4..]])
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
