//! CONNECT and ACCEPT bodies (`docs/protocol.md` §3.1, §3.2): magic, version,
//! options block, user data. They share one layout, hence one view.

use crate::Error;
use crate::field::read_u16;
use crate::frame::{FrameType, flags};
use crate::limits::MAX_OPTIONS_LEN;
use crate::options::OptionsRepr;

mod field {
    use crate::field::{Field, Rest};
    pub(crate) const MAGIC: Field = 0..4;
    pub(crate) const VERSION: usize = 4;
    pub(crate) const MIN_VERSION: usize = 5;
    pub(crate) const OPTIONS_LEN: Field = 6..8;
    pub(crate) const OPTIONS: Rest = 8..;
}

/// The four octets every CONNECT and ACCEPT body starts with: ASCII `BKND`.
/// A callee that reads anything else is not talking to a bookend caller.
pub const MAGIC: [u8; 4] = *b"BKND";
/// The protocol version this crate implements.
pub const VERSION: u8 = 1;
/// Fixed part of a CONNECT or ACCEPT body: magic (4), version (1),
/// min version / reserved (1), options length (2).
pub const HELLO_FIXED_LEN: usize = field::OPTIONS.start;

/// A zero-copy view of a CONNECT or ACCEPT *body* (the bytes after the frame header).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Hello<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Hello<T> {
    /// Wraps a body without checking it.
    pub const fn new_unchecked(buffer: T) -> Self {
        Self { buffer }
    }

    /// Wraps a body and checks the fixed part and the options block length.
    ///
    /// This function returns `Err(Error::Truncated)` if the fixed part is
    /// missing and `Err(Error::BadOptionsLength)` if the options block runs
    /// past the body or over [`MAX_OPTIONS_LEN`].
    pub fn new_checked(buffer: T) -> Result<Self, Error> {
        let hello = Self::new_unchecked(buffer);
        hello.check_len()?;
        Ok(hello)
    }

    /// See [`new_checked`](Self::new_checked).
    pub fn check_len(&self) -> Result<(), Error> {
        let len = self.buffer.as_ref().len();
        if len < HELLO_FIXED_LEN {
            return Err(Error::Truncated);
        }
        let olen = usize::from(self.options_len());
        if olen > MAX_OPTIONS_LEN as usize || olen > len - HELLO_FIXED_LEN {
            return Err(Error::BadOptionsLength);
        }
        Ok(())
    }

    /// The magic octets.
    pub fn magic(&self) -> [u8; 4] {
        let d = self.buffer.as_ref();
        [d[field::MAGIC.start], d[1], d[2], d[3]]
    }

    /// CONNECT: the highest version the caller speaks. ACCEPT: the chosen version.
    pub fn version(&self) -> u8 {
        self.buffer.as_ref()[field::VERSION]
    }

    /// CONNECT: the lowest version the caller speaks. ACCEPT: reserved, zero.
    pub fn min_version(&self) -> u8 {
        self.buffer.as_ref()[field::MIN_VERSION]
    }

    /// Length of the options block.
    pub fn options_len(&self) -> u16 {
        read_u16(self.buffer.as_ref(), field::OPTIONS_LEN.start)
    }

    /// The raw options block.
    pub fn options(&self) -> &[u8] {
        &self.buffer.as_ref()[field::OPTIONS][..usize::from(self.options_len())]
    }

    /// The user data after the options block (possibly empty).
    pub fn data(&self) -> &[u8] {
        &self.buffer.as_ref()[HELLO_FIXED_LEN + usize::from(self.options_len())..]
    }
}

impl<'a> Hello<&'a [u8]> {
    /// Splits a checked view into its options block and user data, borrowed
    /// for the buffer's lifetime rather than the view's.
    pub fn into_parts(self) -> (&'a [u8], &'a [u8]) {
        let olen = usize::from(self.options_len());
        let rest = &self.buffer[HELLO_FIXED_LEN..];
        rest.split_at(olen)
    }
}

/// Validates data presence against the HAS_DATA flag (`docs/protocol.md` §2.2).
pub(crate) fn data_by_flag(
    frame_type: FrameType,
    flag_bits: u8,
    data: &[u8],
) -> Result<Option<&[u8]>, Error> {
    if flag_bits & flags::HAS_DATA != 0 {
        Ok(Some(data))
    } else if data.is_empty() {
        Ok(None)
    } else {
        Err(Error::DataWithoutFlag { frame_type })
    }
}

/// The common parse result of a CONNECT or ACCEPT body.
struct ParsedHello<'a> {
    version: u8,
    min_version: u8,
    options: OptionsRepr,
    data: Option<&'a [u8]>,
}

fn parse_hello(
    frame_type: FrameType,
    body: &[u8],
    flag_bits: u8,
) -> Result<ParsedHello<'_>, Error> {
    let hello = Hello::new_checked(body).map_err(|e| match e {
        Error::Truncated => Error::BodyTooShort { frame_type },
        other => other,
    })?;
    if hello.magic() != MAGIC {
        return Err(Error::BadMagic);
    }
    let (version, min_version) = (hello.version(), hello.min_version());
    let (options, data) = hello.into_parts();
    Ok(ParsedHello {
        version,
        min_version,
        options: OptionsRepr::parse(options)?,
        data: data_by_flag(frame_type, flag_bits, data)?,
    })
}

fn hello_len(options: &OptionsRepr, data: Option<&[u8]>) -> usize {
    HELLO_FIXED_LEN + options.buffer_len() + data.map_or(0, <[u8]>::len)
}

fn emit_hello(
    buf: &mut [u8],
    version: u8,
    min_version: u8,
    options: &OptionsRepr,
    data: Option<&[u8]>,
) -> Result<usize, Error> {
    let needed = hello_len(options, data);
    if buf.len() < needed {
        return Err(Error::BufferTooSmall { needed });
    }
    let olen = options.buffer_len();
    buf[field::MAGIC].copy_from_slice(&MAGIC);
    buf[field::VERSION] = version;
    buf[field::MIN_VERSION] = min_version;
    // An options block is at most 6 TLVs of 8 bytes: far below u16::MAX.
    buf[field::OPTIONS_LEN].copy_from_slice(&(olen as u16).to_be_bytes());
    options.emit(&mut buf[HELLO_FIXED_LEN..HELLO_FIXED_LEN + olen])?;
    if let Some(d) = data {
        buf[HELLO_FIXED_LEN + olen..needed].copy_from_slice(d);
    }
    Ok(needed)
}

/// A parsed CONNECT: the caller's request (WSAConnect's caller data and options).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct ConnectRepr<'a> {
    /// Lowest protocol version the caller speaks (≥ 1).
    pub min_version: u8,
    /// Highest protocol version the caller speaks (≥ `min_version`).
    pub max_version: u8,
    /// Proposed options.
    pub options: OptionsRepr,
    /// Caller data; `None` when the HAS_DATA flag is clear.
    pub data: Option<&'a [u8]>,
}

impl<'a> ConnectRepr<'a> {
    /// Parses a CONNECT body given the header's flags octet.
    ///
    /// This function returns `Err` for a short body, bad magic, an invalid
    /// version range, invalid options, or data without the HAS_DATA flag.
    pub fn parse(body: &'a [u8], flag_bits: u8) -> Result<Self, Error> {
        let h = parse_hello(FrameType::Connect, body, flag_bits)?;
        if h.min_version == 0 || h.min_version > h.version {
            return Err(Error::BadVersion);
        }
        Ok(Self {
            min_version: h.min_version,
            max_version: h.version,
            options: h.options,
            data: h.data,
        })
    }

    /// Exact body length.
    pub fn body_len(&self) -> usize {
        hello_len(&self.options, self.data)
    }

    /// Emits the body into `buf`, returning the bytes written.
    ///
    /// This function returns `Err(Error::BufferTooSmall)` if `buf` is shorter
    /// than [`body_len`](Self::body_len).
    pub fn emit_body(&self, buf: &mut [u8]) -> Result<usize, Error> {
        emit_hello(
            buf,
            self.max_version,
            self.min_version,
            &self.options,
            self.data,
        )
    }
}

/// A parsed ACCEPT: the callee's answer (CF_ACCEPT with callee data and granted options).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct AcceptRepr<'a> {
    /// The version chosen from the caller's range.
    pub version: u8,
    /// Granted options.
    pub options: OptionsRepr,
    /// Callee data; `None` when the HAS_DATA flag is clear.
    pub data: Option<&'a [u8]>,
}

impl<'a> AcceptRepr<'a> {
    /// Parses an ACCEPT body given the header's flags octet.
    ///
    /// This function returns `Err` for a short body, bad magic, version 0,
    /// invalid options, or data without the HAS_DATA flag.
    pub fn parse(body: &'a [u8], flag_bits: u8) -> Result<Self, Error> {
        let h = parse_hello(FrameType::Accept, body, flag_bits)?;
        if h.version == 0 {
            return Err(Error::BadVersion);
        }
        Ok(Self {
            version: h.version,
            options: h.options,
            data: h.data,
        })
    }

    /// Exact body length.
    pub fn body_len(&self) -> usize {
        hello_len(&self.options, self.data)
    }

    /// Emits the body into `buf` (reserved octet zero), returning the bytes written.
    ///
    /// This function returns `Err(Error::BufferTooSmall)` if `buf` is shorter
    /// than [`body_len`](Self::body_len).
    pub fn emit_body(&self, buf: &mut [u8]) -> Result<usize, Error> {
        emit_hello(buf, self.version, 0, &self.options, self.data)
    }
}
