//! The CRC-32C alone, for instruction counts per byte (`docs/protocol.md`
//! §2.5): `valgrind --tool=callgrind target/release/profile_crc 16 hw` runs
//! `bookend_wire::crc32c` (the CPU's CRC instructions where bookend-wire's
//! `std` feature finds them) over 16 MiB in 16 KiB frames, `... 16 portable`
//! the portable table a CPU without a CRC instruction (a Cortex-M4) runs,
//! `... 16 none` only the loop, to subtract. Build with
//! `--features bookend-wire/small-crc-table` for the 1 KiB table.

fn main() {
    let mut args = std::env::args().skip(1);
    let mib: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(16);
    let path = args.next().unwrap_or_else(|| "hw".to_string());
    let frame: Vec<u8> = (0..16 * 1024u32).map(|i| (i * 31 + 7) as u8).collect();
    let mut acc = 0u32;
    for _ in 0..(mib << 20) / frame.len() {
        let f = std::hint::black_box(&frame[..]);
        acc = acc.rotate_left(1)
            ^ match path.as_str() {
                "portable" => bookend_wire::crc32c_portable(f),
                "none" => u32::from(f[0]),
                _ => bookend_wire::crc32c(f),
            };
    }
    println!("{acc:#010x}");
}
