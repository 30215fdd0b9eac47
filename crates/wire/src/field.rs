//! Byte ranges of fixed fields, in the manner of smoltcp's `wire::field`.

/// A fixed field: a byte range inside a header.
pub(crate) type Field = core::ops::Range<usize>;
/// A variable-length tail starting at an offset.
pub(crate) type Rest = core::ops::RangeFrom<usize>;

/// Big-endian (network order) u16 at `data[f]`. Callers have checked the length.
pub(crate) fn read_u16(data: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([data[at], data[at + 1]])
}

/// Big-endian (network order) u32 at `data[at..at + 4]`. Callers have checked the length.
pub(crate) fn read_u32(data: &[u8], at: usize) -> u32 {
    u32::from_be_bytes([data[at], data[at + 1], data[at + 2], data[at + 3]])
}
