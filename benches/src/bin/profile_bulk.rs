//! Runs only the bookend bulk transfer, for profilers:
//! `perf record -g target/release/profile_bulk`.

use bookend_benches::Bookend;
use bookend_session::Options;

fn main() {
    let data = vec![0x42u8; 64 * 1024];
    let mut sink = vec![0u8; 64 * 1024];
    let mut be = Bookend::new(64 * 1024, 8);
    let (c, s) = be.connect(Options::DEFAULT);
    be.transfer(c, s, 512 << 20, &data, &mut sink);
}
